"""squall's stand-in for the parts of StackStorm's ``st2common`` package that Python actions
import. Only ``st2common.runners.base_action.Action`` is provided; see that module.

This package is written for squall and written into a per-execution directory on PYTHONPATH.
"""
