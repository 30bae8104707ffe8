"""Subcommands of the ``spatialvlm`` command, one module each (see ``spatialvlm.cli``)."""
