"""The base class of StackStorm-style Python actions, as squall provides it.

Packs keep their usual import line::

    from st2common.runners.base_action import Action

    class Hello(Action):
        def run(self, name):
            self.logger.info("greeting %s", name)
            return True, {"greeting": "hello " + name}

An action instance has:

* ``self.config`` -- the pack's configuration (a dict); reading a key that is not there raises
  ``KeyError`` naming the pack, the key and the config file;
* ``self.logger`` -- a ``logging.Logger`` named ``actions.python.<ClassName>`` that writes
  ``<name>: <LEVEL> <message>`` lines to stderr at the ``log_level`` runner parameter;
* ``self.action_service`` -- datastore access. squall has no StackStorm datastore, so its
  methods raise ``NotImplementedError`` saying so.

Written for squall; it is not StackStorm's code.
"""

import logging
import sys

__all__ = ["Action", "ActionService", "PackConfig", "AUDIT"]

# StackStorm's extra level above CRITICAL.
AUDIT = logging.CRITICAL + 10
logging.addLevelName(AUDIT, "AUDIT")

_LEVELS = {
    "AUDIT": AUDIT,
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}

# Set by squall's wrapper from the ``log_level`` runner parameter before the action is built.
log_level = "DEBUG"


def _action_logger(class_name):
    logger = logging.getLogger("actions.python." + class_name)
    if not any(getattr(h, "_squall_handler", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._squall_handler = True
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(_LEVELS.get(str(log_level).upper(), logging.DEBUG))
    logger.propagate = False
    return logger


class PackConfig(dict):
    """A pack's configuration: a plain dict whose missing keys say where to add them."""

    def __init__(self, values=None, pack=None, path=None):
        dict.__init__(self, values or {})
        self._pack = pack
        self._path = path

    def __missing__(self, key):
        message = 'Config for pack "%s" is missing key "%s".' % (self._pack, key)
        if self._path:
            message += " Add it to %s." % self._path
        else:
            message += " The pack has no config file."
        raise KeyError(message)


class ActionService(object):
    """What StackStorm hands actions for its datastore. squall does not provide a datastore:
    every method raises ``NotImplementedError``. Pass such values as action parameters or put
    them in the pack config instead."""

    def __init__(self, pack=None, user=None):
        self.pack = pack
        self.user = user

    def _unavailable(self, method):
        raise NotImplementedError(
            "action_service.%s() needs the StackStorm datastore, which is not available in squall; "
            "pass the value as an action parameter or in the pack config instead" % method
        )

    def get_value(self, *args, **kwargs):
        self._unavailable("get_value")

    def set_value(self, *args, **kwargs):
        self._unavailable("set_value")

    def delete_value(self, *args, **kwargs):
        self._unavailable("delete_value")

    def list_values(self, *args, **kwargs):
        self._unavailable("list_values")

    def get_user_info(self, *args, **kwargs):
        self._unavailable("get_user_info")


class Action(object):
    """Derive from this and implement ``run(self, **parameters)``.

    ``run`` returns the result (any JSON-serialisable value), or a ``(status, result)`` tuple
    where ``status`` is ``True`` (succeeded) or ``False`` (failed).
    """

    description = None

    def __init__(self, config=None, action_service=None):
        self.config = config if config is not None else PackConfig()
        self.action_service = action_service if action_service is not None else ActionService()
        self.logger = _action_logger(type(self).__name__)

    def run(self, **kwargs):
        raise NotImplementedError("%s must implement run(self, **parameters)" % type(self).__name__)
