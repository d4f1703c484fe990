"""Subcommands of the ``crishim`` program, one module each.

A module here provides ``register(subparsers)``: it adds its parser (with
nested subparsers for groups such as ``image pull|ls|rm``) and sets
``run=<function(args) -> exit status>`` as a parser default. ``cri.cli`` lists
the modules in ``COMMANDS``; adding a subcommand is a new module plus one line there.
Modules import heavy dependencies inside ``run`` so that ``--help`` stays fast.
"""
