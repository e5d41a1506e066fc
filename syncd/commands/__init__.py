"""One module per subcommand: each a plain function of plain values that
returns an exit code, so it can be called and tested without argparse.

Problems a user can fix are raised as ``syncd.errors`` exceptions; the command
line's one handler prints them and picks the exit code.
"""
