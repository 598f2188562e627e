"""squall's launcher for StackStorm-style Python actions (the ``python-script`` runner).

squall runs ``python -u <this file>`` with:

* stdin: one JSON document ``{"file_path", "pack", "user", "parameters", "config",
  "config_path", "log_level"}``, then end of file -- parameters and config never travel in argv;
* file descriptor 3: a pipe for the outcome, written once when ``run()`` returns: the tuple
  status as a JSON line (``true``, ``false`` or ``null``), then the result as JSON. stdout and
  stderr belong to the action alone.

Exit codes: 0 when ``run()`` returned (its tuple status travels in the outcome), 220 when it
returned a tuple whose status is not a boolean, 1 (with the traceback on stderr) when it raised.

Written for squall; it is not StackStorm's code.
"""

import importlib.util
import inspect
import json
import os
import sys

RESULT_FD = 3
INVALID_STATUS_EXIT = 220


def load_action_class(file_path, base):
    """The action class of ``file_path``: among the classes the file itself defines that derive
    from ``base``, the first by name (StackStorm's pick), preferring ones that implement run()."""
    if not os.path.isfile(file_path):
        return None
    directory = os.path.dirname(os.path.abspath(file_path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = os.path.splitext(os.path.basename(file_path))[0]
    if name in sys.modules:
        name = "squall_action_" + name
    spec = importlib.util.spec_from_file_location(name, file_path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    found = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and issubclass(cls, base) and cls is not base
    ]
    implemented = [cls for cls in found if cls.run is not base.run]
    candidates = implemented or found
    return candidates[0] if candidates else None


def instantiate(action_class, config, service):
    """Builds the action as StackStorm does; old actions whose ``__init__`` takes only
    ``config`` get the service as an attribute."""
    try:
        accepted = inspect.signature(action_class.__init__).parameters
    except (TypeError, ValueError):
        accepted = {"config": None, "action_service": None}
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    if takes_any or "action_service" in accepted:
        return action_class(config=config, action_service=service)
    action = action_class(config=config)
    action.action_service = service
    return action


def encode(status, result):
    """The status line (``true``, ``false`` or ``null``), then the result as JSON."""
    try:
        text = json.dumps(result, default=str, allow_nan=False)
    except (TypeError, ValueError):
        # Circular structures, non-string keys, NaN: the value's string form, as StackStorm does.
        text = json.dumps(str(result))
    return (json.dumps(status) + "\n" + text).encode("utf-8")


def main():
    try:
        os.set_inheritable(RESULT_FD, False)
        outcome = os.fdopen(RESULT_FD, "wb")
    except OSError:
        sys.stderr.write("squall: no result pipe on file descriptor 3; this wrapper is run by squall's python-script runner\n")
        return 1
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    # stdin carried the request only; the action and its children read an empty one.
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    from st2common.runners import base_action

    base_action.log_level = request.get("log_level") or "DEBUG"
    file_path = request["file_path"]
    action_class = load_action_class(file_path, base_action.Action)
    if action_class is None:
        sys.stderr.write('File "%s" has no action class or the file doesn\'t exist.\n' % file_path)
        return 1
    config = base_action.PackConfig(request.get("config") or {}, request.get("pack"), request.get("config_path"))
    service = base_action.ActionService(request.get("pack"), request.get("user"))
    action = instantiate(action_class, config, service)

    value = action.run(**(request.get("parameters") or {}))

    status = None
    if isinstance(value, tuple) and len(value) == 2:
        if not isinstance(value[0], bool):
            sys.stderr.write(
                "Status returned from the action run() method must either be True or False, got: %s\n" % (value[0],)
            )
            return INVALID_STATUS_EXIT
        status, value = value
    sys.stdout.flush()
    sys.stderr.flush()
    outcome.write(encode(status, value))
    outcome.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
