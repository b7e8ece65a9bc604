"""Validation, the prompt queue and the executor, following ComfyUI's execution.py.

The validation code keeps ComfyUI's structure on purpose: the 400 bodies and
the 500s (a prompt that is not an object makes ComfyUI's own loop raise) come
out of the same Python operations, so their shapes match.
"""

from __future__ import annotations

import copy
import heapq
import inspect
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from typing import NamedTuple

import faults
import nodes
import progress

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
MAXIMUM_HISTORY_SIZE = 10000
OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before"
    " you might have accidentally set the batch_size to a large number."
)


def full_type_name(klass) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def get_input_info(class_inputs: dict, name: str):
    for category in ("required", "optional", "hidden"):
        if name in class_inputs.get(category, {}):
            spec = class_inputs[category][name]
            extra = spec[1] if len(spec) > 1 else {}
            return spec[0], category, extra
    return None, None, None


def _validate_node_input(received_type, input_type) -> bool:
    if received_type == input_type or "*" in (received_type, input_type):
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    return not set(received_type.split(",")).isdisjoint(input_type.split(","))


def _error(kind: str, message: str, details: str, **extra_info) -> dict:
    """One validation error, in the shape ComfyUI's 400 bodies carry."""
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def validate_inputs(prompt, item, validated):
    unique_id = item
    if unique_id in validated:
        return validated[unique_id]

    inputs = prompt[unique_id]["inputs"]
    class_type = prompt[unique_id]["class_type"]
    obj_class = nodes.NODE_CLASS_MAPPINGS[class_type]
    class_inputs = obj_class.INPUT_TYPES()
    # ComfyUI walks a set here; the double walks declaration order so errors come out stably.
    valid_inputs = list(class_inputs.get("required", {})) + list(class_inputs.get("optional", {}))

    errors = []
    valid = True
    validate_function_inputs = []
    validate_has_kwargs = False
    if hasattr(obj_class, "VALIDATE_INPUTS"):
        argspec = inspect.getfullargspec(obj_class.VALIDATE_INPUTS)
        validate_function_inputs = argspec.args
        validate_has_kwargs = argspec.varkw is not None

    for x in valid_inputs:
        input_type, input_category, extra_info = get_input_info(class_inputs, x)
        if x not in inputs:
            if input_category == "required":
                errors.append(
                    _error("required_input_missing", "Required input is missing", x, input_name=x)
                )
            continue

        val = inputs[x]
        info = (input_type, extra_info)
        seen = {"input_name": x, "input_config": info, "received_value": val}
        if isinstance(val, list):
            if len(val) != 2:
                message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
                errors.append(_error("bad_linked_input", message, x, **seen))
                continue
            o_id = val[0]
            o_class_type = prompt[o_id]["class_type"]
            received_type = nodes.NODE_CLASS_MAPPINGS[o_class_type].RETURN_TYPES[val[1]]
            if not _validate_node_input(received_type, input_type):
                details = f"{x}, received_type({received_type}) mismatch input_type({input_type})"
                message = "Return type mismatch between linked nodes"
                extra = {"input_name": x, "input_config": info, "received_type": received_type}
                errors.append(
                    _error("return_type_mismatch", message, details, **extra, linked_node=val)
                )
                continue
            try:
                r = validate_inputs(prompt, o_id, validated)
                if r[0] is False:
                    valid = False
                    continue
            except Exception as ex:
                typ, _, tb = sys.exc_info()
                valid = False
                reason = _error(
                    "exception_during_inner_validation", "Exception when validating inner node",
                    str(ex), input_name=x, input_config=info, exception_message=str(ex),
                    exception_type=full_type_name(typ), traceback=traceback.format_tb(tb),
                    linked_node=val,
                )  # fmt: skip
                validated[o_id] = (False, [reason], o_id)
                continue
        else:
            try:
                if isinstance(val, dict) and "__value__" in val:
                    val = val["__value__"]
                if input_type == "INT":
                    val = int(val)
                if input_type == "FLOAT":
                    val = float(val)
                if input_type == "STRING":
                    val = str(val)
                if input_type == "BOOLEAN":
                    val = bool(val)
                inputs[x] = val
            except Exception as ex:
                message = f"Failed to convert an input value to a {input_type} value"
                errors.append(
                    _error("invalid_input_type", message, f"{x}, {val}, {ex}", **seen,
                           exception_message=str(ex))
                )  # fmt: skip
                continue
            seen["received_value"] = val

            if x not in validate_function_inputs and not validate_has_kwargs:
                if "min" in extra_info and val < extra_info["min"]:
                    message = "Value {} smaller than min of {}".format(val, extra_info["min"])
                    errors.append(_error("value_smaller_than_min", message, x, **seen))
                    continue
                if "max" in extra_info and val > extra_info["max"]:
                    message = "Value {} bigger than max of {}".format(val, extra_info["max"])
                    errors.append(_error("value_bigger_than_max", message, x, **seen))
                    continue
                if isinstance(input_type, list) and val not in input_type:
                    # ComfyUI leaves long lists (lots of model files) out of the message.
                    if len(input_type) > 20:
                        list_info = f"(list of length {len(input_type)})"
                        seen["input_config"] = None
                    else:
                        list_info = str(input_type)
                    details = f"{x}: '{val}' not in {list_info}"
                    errors.append(_error("value_not_in_list", "Value not in list", details, **seen))
                    continue

    if validate_function_inputs or validate_has_kwargs:
        filtered = {
            k: v for k, v in inputs.items() if k in validate_function_inputs or validate_has_kwargs
        }
        ret = obj_class.VALIDATE_INPUTS(**filtered)
        for x in filtered:
            if ret is not True:
                details = f"{x}" + (f" - {ret}" if ret is not False else "")
                message = "Custom validation failed for node"
                errors.append(_error("custom_validation_failed", message, details, input_name=x))

    ret = (False, errors, unique_id) if errors or valid is not True else (True, [], unique_id)
    validated[unique_id] = ret
    return ret


def validate_prompt(prompt, partial_execution_list=None):
    outputs = set()
    for x in prompt:
        if "class_type" not in prompt[x]:
            message = "Cannot execute because a node is missing the class_type property."
            return (False, _error("invalid_prompt", message, f"Node ID '#{x}'"), [], {})
        class_type = prompt[x]["class_type"]
        class_ = nodes.NODE_CLASS_MAPPINGS.get(class_type, None)
        if class_ is None:
            message = f"Cannot execute because node {class_type} does not exist."
            return (False, _error("invalid_prompt", message, f"Node ID '#{x}'"), [], {})
        if getattr(class_, "OUTPUT_NODE", False) is True:
            if partial_execution_list is None or x in partial_execution_list:
                outputs.add(x)

    if len(outputs) == 0:
        return (False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {})

    good_outputs = []
    errors = []
    node_errors = {}
    validated = {}
    for o in sorted(outputs, key=_node_order):
        try:
            valid, reasons, _ = validate_inputs(prompt, o, validated)
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            valid = False
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(ex),
                    "extra_info": {
                        "exception_type": full_type_name(typ),
                        "traceback": traceback.format_tb(tb),
                    },
                }
            ]
            validated[o] = (False, reasons, o)

        if valid is True:
            good_outputs.append(o)
            continue
        logging.error("Failed to validate prompt for output %s:", o)
        errors.append((o, reasons))
        for node_id, result in validated.items():
            # Nodes downstream of a bad node are invalid without reasons of their own: not reported.
            if result[0] is not True and len(result[1]) > 0:
                if node_id not in node_errors:
                    class_type = prompt[node_id]["class_type"]
                    node_errors[node_id] = {
                        "errors": result[1],
                        "dependent_outputs": [],
                        "class_type": class_type,
                    }
                    logging.error("* %s %s:", class_type, node_id)
                    for reason in result[1]:
                        logging.error("  - %s: %s", reason["message"], reason["details"])
                node_errors[node_id]["dependent_outputs"].append(o)
        logging.error("Output will be ignored")

    if len(good_outputs) == 0:
        lines = [f"{e['message']}: {e['details']}" for _, reasons in errors for e in reasons]
        message = "Prompt outputs failed validation"
        error = _error("prompt_outputs_failed_validation", message, "\n".join(lines))
        return (False, error, good_outputs, node_errors)
    return (True, None, good_outputs, node_errors)


def _node_order(node_id):
    text = str(node_id)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


class ExecutionStatus(NamedTuple):
    status_str: str
    completed: bool
    messages: list


class PromptQueue:
    """ComfyUI's queue: a heap of (number, prompt_id, prompt, extra_data, outputs, sensitive)."""

    def __init__(self, server):
        self.server = server
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.task_counter = 0
        self.queue = []
        self.currently_running = {}
        self.history = {}
        self.flags = {}

    def put(self, item):
        with self.mutex:
            heapq.heappush(self.queue, item)
            self.server.queue_updated()
            self.not_empty.notify()

    def get(self, timeout=None):
        with self.not_empty:
            while len(self.queue) == 0:
                self.not_empty.wait(timeout=timeout)
                if timeout is not None and len(self.queue) == 0:
                    return None
            item = heapq.heappop(self.queue)
            i = self.task_counter
            self.currently_running[i] = copy.deepcopy(item)
            self.task_counter += 1
            self.server.queue_updated()
            return (item, i)

    def task_done(self, item_id, history_result, status: ExecutionStatus):
        with self.mutex:
            prompt = self.currently_running.pop(item_id)[:5]
            if len(self.history) > MAXIMUM_HISTORY_SIZE:
                self.history.pop(next(iter(self.history)))
            self.history[prompt[1]] = {"prompt": prompt, "outputs": {}, "status": status._asdict()}
            self.history[prompt[1]].update(history_result)
            self.server.queue_updated()

    def get_current_queue(self):
        with self.mutex:
            running = [x[:5] for x in self.currently_running.values()]
            return running, [x[:5] for x in sorted(self.queue)]

    def get_tasks_remaining(self):
        with self.mutex:
            return len(self.queue) + len(self.currently_running)

    def wipe_queue(self):
        with self.mutex:
            self.queue = []
            self.server.queue_updated()

    def delete_queue_item(self, prompt_id) -> bool:
        with self.mutex:
            for index, item in enumerate(self.queue):
                if item[1] == prompt_id:
                    self.queue.pop(index)
                    heapq.heapify(self.queue)
                    self.server.queue_updated()
                    return True
            return False

    def get_history(self, prompt_id=None, max_items=None, offset=-1):
        with self.mutex:
            if prompt_id is not None:
                return (
                    {prompt_id: copy.deepcopy(self.history[prompt_id])}
                    if prompt_id in self.history
                    else {}
                )
            keys = list(self.history)
            if offset < 0 and max_items is not None:
                offset = len(keys) - max_items
            offset = max(0, offset)
            chosen = keys[offset:] if max_items is None else keys[offset : offset + max_items]
            return {k: copy.deepcopy(self.history[k]) for k in chosen}

    def wipe_history(self):
        with self.mutex:
            self.history = {}

    def delete_history_item(self, prompt_id):
        with self.mutex:
            self.history.pop(prompt_id, None)

    def set_flag(self, name, value):
        with self.mutex:
            self.flags[name] = value
            self.not_empty.notify()

    def get_flags(self, reset=True):
        with self.mutex:
            flags = self.flags
            if reset:
                self.flags = {}
            return flags


class _NodeFailed(Exception):
    def __init__(self, node_id, error):
        self.node_id = node_id
        self.error = error


class _Interrupted(Exception):
    def __init__(self, node_id):
        self.node_id = node_id


class PromptExecutor:
    """Runs one prompt at a time; keeps the last prompt's node outputs (ComfyUI's classic cache)."""

    def __init__(self, server, cache_enabled: bool = True):
        self.server = server
        self.cache_enabled = cache_enabled
        self.cache: dict = {}  # signature -> (outputs, ui)
        self.reset()

    def reset(self):
        self.cache = {}
        self.status_messages = []
        self.success = True
        self.history_result = {}

    def add_message(self, event, data, broadcast: bool):
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.status_messages.append((event, data))
        if self.server.client_id is not None or broadcast:
            self.server.send_sync(event, data, self.server.client_id)

    def _signature(self, prompt, node_id, memo):
        if node_id in memo:
            return memo[node_id]
        node = prompt[node_id]
        cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        parts = [node["class_type"]]
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            if isinstance(value, list) and len(value) == 2:
                value = ("link", self._signature(prompt, value[0], memo), value[1])
            parts.append((name, repr(value)))
        if hasattr(cls, "IS_CHANGED"):
            try:
                changed = cls.IS_CHANGED(**_plain_inputs(node["inputs"], cls))
            except Exception:
                changed = float("nan")
            # NaN never equals itself: such a node never comes from the cache.
            parts.append(
                (
                    "is_changed",
                    object()
                    if isinstance(changed, float) and math.isnan(changed)
                    else repr(changed),
                )
            )
        memo[node_id] = tuple(parts)
        return memo[node_id]

    def execute(self, prompt, prompt_id, extra_data, execute_outputs):
        progress.interrupt_processing(False)
        self.server.client_id = extra_data.get("client_id")
        self.status_messages = []
        self.success = True
        self.add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)

        memo = {}
        signatures = {node_id: self._signature(prompt, node_id, memo) for node_id in prompt}
        cached = self.cache if self.cache_enabled else {}
        cached_nodes = [node_id for node_id in prompt if signatures[node_id] in cached]
        self.add_message(
            "execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id}, broadcast=False
        )

        order = _execution_order(prompt, execute_outputs)
        values = {}
        ui_outputs = {}
        executed = set()
        states = {node_id: {"value": 0.0, "max": 1.0, "state": "pending"} for node_id in order}

        def stopped_at(node_id):
            """What execution_interrupted and execution_error say about where the run stopped."""
            return {"prompt_id": prompt_id, "node_id": node_id,
                    "node_type": prompt[node_id]["class_type"],
                    "executed": sorted(executed, key=_node_order)}  # fmt: skip

        try:
            for node_id in order:
                signature = signatures[node_id]
                if signature in cached:
                    values[node_id], ui = cached[signature]
                    if ui is not None:
                        ui_outputs[node_id] = ui
                        self._send_executed(prompt_id, node_id, ui)
                        states[node_id].update(value=1.0, state="finished")
                        self._progress_state(prompt_id, states)
                else:
                    if progress.processing_interrupted():
                        progress.interrupt_processing(False)
                        raise _Interrupted(node_id)
                    self._run_node(
                        prompt, prompt_id, extra_data, node_id, values, ui_outputs, states
                    )
                    self.cache[signature] = (values[node_id], ui_outputs.get(node_id))
                executed.add(node_id)
                pause = faults.FAULTS.take_ws_drop(node_id)
                if pause is not None:
                    self.server.drop_client(self.server.client_id)
                    time.sleep(pause)
            self.add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)
        except _Interrupted as stop:
            self.success = False
            self.add_message("execution_interrupted", stopped_at(stop.node_id), broadcast=True)
        except _NodeFailed as failure:
            self.success = False
            mes = {
                **stopped_at(failure.node_id),
                **failure.error,
                "current_outputs": sorted(values, key=_node_order),
            }
            self.add_message("execution_error", mes, broadcast=False)
        finally:
            self.server.last_node_id = None

        keep = set(signatures.values())
        self.cache = {sig: v for sig, v in self.cache.items() if sig in keep}
        if not self.success:
            ui_outputs = {}
        meta = {
            n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
            for n in ui_outputs
        }
        self.history_result = {"outputs": ui_outputs, "meta": meta}

    def _send_client(self, event, data):
        if self.server.client_id is not None:
            self.server.send_sync(event, data, self.server.client_id)

    def _progress_state(self, prompt_id, states):
        nodes_state = {
            node_id: {
                **state,
                "node_id": node_id,
                "prompt_id": prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, state in states.items()
            if state["state"] != "pending"
        }
        # ComfyUI's WebUIProgressHandler sends these to the prompt's client only (to every
        # socket when the prompt came without a client id), as in comfy_execution/progress.py.
        self.server.send_sync(
            "progress_state", {"prompt_id": prompt_id, "nodes": nodes_state}, self.server.client_id
        )

    def _send_executed(self, prompt_id, node_id, ui):
        data = {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id}
        self._send_client("executed", data)

    def _run_node(self, prompt, prompt_id, extra_data, node_id, values, ui_outputs, states):
        node = prompt[node_id]
        class_type = node["class_type"]
        if faults.FAULTS.kill_at_node and faults.FAULTS.kill_at_node == node_id:
            logging.warning("fault switch kill_at_node: killing the process at node %s", node_id)
            self.server.kill_after_flush()
            time.sleep(3600)
        cls = nodes.NODE_CLASS_MAPPINGS[class_type]
        class_inputs = cls.INPUT_TYPES()
        kwargs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2:
                kwargs[name] = values[value[0]][value[1]]
            else:
                kwargs[name] = value
        for name, kind in class_inputs.get("hidden", {}).items():
            kwargs[name] = {
                "PROMPT": prompt,
                "EXTRA_PNGINFO": extra_data.get("extra_pnginfo"),
                "UNIQUE_ID": node_id,
            }.get(kind)

        states[node_id].update(value=0.0, max=1.0, state="running")
        self._progress_state(prompt_id, states)
        self.server.last_node_id = node_id
        self._send_client(
            "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}
        )

        def hook(value, total, preview):
            states[node_id].update(value=value, max=total)
            self._progress_state(prompt_id, states)
            self._send_client(
                "progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id}
            )
            if preview is not None:
                self.server.send_image(preview, self.server.client_id)

        progress.HOOK = hook
        try:
            result = getattr(cls(), cls.FUNCTION)(**kwargs)
        except progress.InterruptProcessingException:
            raise _Interrupted(node_id) from None
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            logging.error("!!! Exception during processing !!! %s", ex)
            logging.error(traceback.format_exc())
            states[node_id].update(state="error")
            self._progress_state(prompt_id, states)
            current_inputs = {
                k: [_format_value(v)]
                for k, v in kwargs.items()
                if k not in ("prompt", "extra_pnginfo")
            }
            tips = ""
            if type(ex).__name__ == "OutOfMemoryError":
                tips = OOM_TIPS
                logging.error("Got an OOM, unloading all loaded models.")
            raise _NodeFailed(
                node_id,
                {
                    # ComfyUI always adds "\n" and the tips, even when there are none.
                    "exception_message": f"{ex}\n{tips}",
                    "exception_type": full_type_name(typ),
                    "traceback": traceback.format_tb(tb),
                    "current_inputs": current_inputs,
                },
            ) from None
        finally:
            progress.HOOK = None

        ui = None
        if isinstance(result, dict):
            ui = result.get("ui")
            result = result.get("result", ())
        values[node_id] = tuple(result or ())
        if ui:
            ui = _json_ready(ui)
            ui_outputs[node_id] = ui
            self._send_executed(prompt_id, node_id, ui)
        states[node_id].update(value=states[node_id]["max"], state="finished")
        self._progress_state(prompt_id, states)


def _plain_inputs(inputs, cls):
    argspec = inspect.getfullargspec(cls.IS_CHANGED)
    names = argspec.args[1:]
    return {
        k: v for k, v in inputs.items() if not isinstance(v, list) and (k in names or argspec.varkw)
    }


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _format_value(x):
    if x is None or isinstance(x, (int, float, bool, str)):
        return x
    return str(x)


def _execution_order(prompt, execute_outputs):
    """Depth-first: each output's inputs before it, outputs in id order, every node once."""
    order, seen = [], set()

    def visit(node_id):
        if node_id in seen:
            return
        seen.add(node_id)
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2:
                visit(value[0])
        order.append(node_id)

    for output in sorted(execute_outputs, key=_node_order):
        visit(output)
    return order


def prompt_worker(queue: PromptQueue, server, cache_enabled: bool = True):
    executor = PromptExecutor(server, cache_enabled)

    def apply_flags():
        if queue.get_flags().get("free_memory"):
            executor.reset()

    while True:
        queue_item = queue.get(timeout=1000.0)
        # ComfyUI reads /free's flags only after a prompt; a /free sent just before a prompt
        # could miss it there. The double applies them first so a client's /free always counts.
        apply_flags()
        if queue_item is not None:
            item, item_id = queue_item
            started = time.perf_counter()
            prompt_id = item[1]
            server.last_prompt_id = prompt_id
            extra_data = {**item[3], **item[5]}
            executor.execute(item[2], prompt_id, extra_data, item[4])
            status = ExecutionStatus(
                "success" if executor.success else "error",
                executor.success,
                [list(m) for m in executor.status_messages],
            )
            queue.task_done(item_id, executor.history_result, status)
            if server.client_id is not None:
                server.send_sync(
                    "executing", {"node": None, "prompt_id": prompt_id}, server.client_id
                )
            logging.info("Prompt executed in %.2f seconds", time.perf_counter() - started)
        apply_flags()


def kill_now():
    """The hardest exit there is: what an OOM kill looks like from outside."""
    os.kill(os.getpid(), signal.SIGKILL)
