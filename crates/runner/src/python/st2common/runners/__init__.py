"""Runner helpers for Python actions run by squall (see ``base_action``)."""
