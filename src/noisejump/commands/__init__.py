"""One module per ``noisejump`` subcommand, each with ``add_parser(subparsers)``.

A command module only parses and range-checks options, calls the library, and prints;
defaults belong to the library functions it calls.
"""
