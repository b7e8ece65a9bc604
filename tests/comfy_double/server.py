"""The HTTP and WebSocket server, following ComfyUI's server.py route by route.

Every route is also served under /api. Test-only routes live under /_double.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import logging
import mimetypes
import os
import platform
import struct
import sys
import uuid

import execution
import faults
import folder_paths
import nodes
from aiohttp import web

COMFYUI_VERSION = "0.3.64"
PREVIEW_IMAGE = 1
IMAGE_FORMATS = {"JPEG": 1, "PNG": 2}
# aiohttp answers an exception in a handler with this plain-text 500, as it does in ComfyUI.
mimetypes.add_type("audio/flac", ".flac")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("video/mp4", ".mp4")
mimetypes.add_type("video/webm", ".webm")


class PromptServer:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, argv: list[str], cpu: bool, dont_print: bool
    ):
        self.loop = loop
        self.argv = argv
        self.cpu = cpu
        self.messages: asyncio.Queue = asyncio.Queue()
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.closing: set[asyncio.Future] = set()
        self.dropped: set[web.WebSocketResponse] = set()
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.number = 0
        self.prompt_queue = execution.PromptQueue(self)
        self.received: dict[str, dict] = {}  # prompt_id -> what arrived, for tests (never logged)
        self.app = web.Application(client_max_size=100 * 1024 * 1024)
        routes = web.RouteTableDef()
        self._add_routes(routes)
        api_routes = web.RouteTableDef()
        for route in routes:
            api_routes.route(route.method, "/api" + route.path)(route.handler)
        self.app.add_routes(routes)
        self.app.add_routes(api_routes)
        self.dont_print = dont_print

    # ---- messages -------------------------------------------------------------------------
    def queue_info(self):
        return {"exec_info": {"queue_remaining": self.prompt_queue.get_tasks_remaining()}}

    def queue_updated(self):
        self.send_sync("status", {"status": self.queue_info()})

    def send_sync(self, event, data, sid=None):
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))

    def send_image(self, preview, sid):
        image_type, data, _max_size = preview
        payload = struct.pack(">I", IMAGE_FORMATS.get(image_type, 2)) + data
        self.send_sync(PREVIEW_IMAGE, payload, sid)

    def drop_client(self, sid):
        """Fault ws_drop_after_node: close the client's socket, after the frames before it."""
        self.send_sync("__drop__", None, sid)

    def kill_after_flush(self):
        """Fault kill_at_node: send every frame queued so far, then die."""
        self.send_sync("__kill__", None, None)

    async def publish_loop(self):
        while True:
            event, data, sid = await self.messages.get()
            if event == "__drop__":
                ws = self.sockets.pop(sid, None)
                if ws is not None:
                    self.dropped.add(ws)
                    logging.warning(
                        "fault switch ws_drop_after_node: closing the socket of %s", sid
                    )
                    # Not awaited: the close handshake waits on the client, the frames must not.
                    self.closing.add(asyncio.ensure_future(ws.close()))
                    self.closing = {task for task in self.closing if not task.done()}
                continue
            if event == "__kill__":
                execution.kill_now()
            await self.send(event, data, sid)

    async def send(self, event, data, sid=None):
        if isinstance(event, int):
            message = struct.pack(">I", event) + data
            targets = [self.sockets.get(sid)] if sid is not None else list(self.sockets.values())
            for ws in targets:
                if ws is not None:
                    await self._safe_send(ws, ws.send_bytes, message)
            return
        message = json.dumps({"type": event, "data": data})
        if sid is None:
            for ws in list(self.sockets.values()):
                await self._safe_send(ws, ws.send_str, message)
        elif sid in self.sockets:
            # No socket for this client: the frame is lost, as in ComfyUI.
            await self._safe_send(self.sockets[sid], self.sockets[sid].send_str, message)

    @staticmethod
    async def _safe_send(ws, method, message):
        try:
            await method(message)
        except (ConnectionError, RuntimeError) as error:
            logging.warning("send error: %s", error)

    # ---- routes ---------------------------------------------------------------------------
    def _add_routes(self, routes: web.RouteTableDef):  # noqa: C901 - one route table, as in ComfyUI
        @routes.get("/ws")
        async def websocket_handler(request):
            if faults.FAULTS.take_ws_refusal():
                return web.Response(status=503, text="fault switch ws_refuse_count")
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            sid = request.rel_url.query.get("clientId", "") or uuid.uuid4().hex
            # A second socket with the same clientId replaces the first in the map (quirk: when
            # the first one closes later, it takes the second one's entry with it, below).
            self.sockets[sid] = ws
            try:
                await self.send("status", {"status": self.queue_info(), "sid": sid}, sid)
                # A client coming back mid-run hears which node runs now, without a prompt_id.
                if self.client_id == sid and self.last_node_id is not None:
                    await self.send("executing", {"node": self.last_node_id}, sid)
                async for msg in ws:
                    if msg.type == web.WSMsgType.TEXT:
                        try:
                            data = json.loads(msg.data)
                        except ValueError:
                            continue
                        if isinstance(data, dict) and data.get("type") == "feature_flags":
                            # The double only sends the plain preview frames (event 1).
                            flags = {
                                "supports_preview_metadata": False,
                                "max_upload_size": 104857600,
                            }
                            await self.send("feature_flags", flags, sid)
                    elif msg.type == web.WSMsgType.ERROR:
                        logging.warning("ws connection closed with exception %s", ws.exception())
            finally:
                if ws in self.dropped:
                    # Closed by the ws_drop fault, already out of the map: a reconnect may be there.
                    self.dropped.discard(ws)
                else:
                    self.sockets.pop(sid, None)
            return ws

        @routes.get("/")
        async def get_root(request):
            return web.Response(
                text="<html><body>ComfyUI test double</body></html>", content_type="text/html"
            )

        @routes.get("/system_stats")
        async def system_stats(request):
            never = faults.FAULTS.never_ready
            if never == "hang":
                await asyncio.Event().wait()
            if never == "error":
                return web.Response(status=503, text="not ready")
            return web.json_response(self.system_stats())

        @routes.get("/object_info")
        async def get_object_info(request):
            return web.json_response({name: node_info(name) for name in nodes.NODE_CLASS_MAPPINGS})

        @routes.get("/object_info/{node_class}")
        async def get_object_info_node(request):
            name = request.match_info.get("node_class")
            return web.json_response(
                {name: node_info(name)} if name in nodes.NODE_CLASS_MAPPINGS else {}
            )

        @routes.get("/embeddings")
        async def get_embeddings(request):
            names = folder_paths.get_filename_list("embeddings")
            return web.json_response([os.path.splitext(n)[0] for n in names])

        @routes.get("/models")
        async def list_model_types(request):
            return web.json_response(sorted(folder_paths.folder_names_and_paths))

        @routes.get("/models/{folder}")
        async def get_models(request):
            folder = request.match_info.get("folder", "")
            if folder_paths.map_legacy(folder) not in folder_paths.folder_names_and_paths:
                return web.Response(status=404)
            return web.json_response(folder_paths.get_filename_list(folder))

        @routes.get("/queue")
        async def get_queue(request):
            running, pending = self.prompt_queue.get_current_queue()
            return web.json_response({"queue_running": running, "queue_pending": pending})

        @routes.post("/queue")
        async def post_queue(request):
            json_data = await request.json()
            if "clear" in json_data and json_data["clear"]:
                self.prompt_queue.wipe_queue()
            if "delete" in json_data:
                for prompt_id in json_data["delete"]:
                    self.prompt_queue.delete_queue_item(prompt_id)
            return web.Response(status=200)

        @routes.get("/prompt")
        async def get_prompt(request):
            return web.json_response({"exec_info": self.queue_info()["exec_info"]})

        @routes.post("/prompt")
        async def post_prompt(request):
            logging.info("got prompt")
            json_data = await request.json()
            if "number" in json_data:
                number = float(json_data["number"])
            else:
                number = self.number
                if json_data.get("front"):
                    number = -number
                self.number += 1
            if "prompt" not in json_data:
                error = {
                    "type": "no_prompt",
                    "message": "No prompt provided",
                    "details": "No prompt provided",
                    "extra_info": {},
                }
                return web.json_response({"error": error, "node_errors": {}}, status=400)
            prompt = json_data["prompt"]
            prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
            valid = execution.validate_prompt(prompt, json_data.get("partial_execution_targets"))
            extra_data = json_data.get("extra_data", {})
            if "client_id" in json_data:
                extra_data["client_id"] = json_data["client_id"]
            if not valid[0]:
                logging.warning("invalid prompt: %s", valid[1]["message"])
                return web.json_response({"error": valid[1], "node_errors": valid[3]}, status=400)
            sensitive = {
                k: extra_data.pop(k) for k in execution.SENSITIVE_EXTRA_DATA_KEYS if k in extra_data
            }
            self.received[prompt_id] = {
                "prompt": prompt,
                "extra_data": dict(extra_data),
                "sensitive": dict(sensitive),
            }
            self.prompt_queue.put((number, prompt_id, prompt, extra_data, valid[2], sensitive))
            return web.json_response(
                {"prompt_id": prompt_id, "number": number, "node_errors": valid[3]}
            )

        @routes.get("/history")
        async def get_history(request):
            query = request.rel_url.query
            max_items = int(query["max_items"]) if "max_items" in query else None
            offset = int(query.get("offset", -1))
            return web.json_response(
                self.prompt_queue.get_history(max_items=max_items, offset=offset)
            )

        @routes.get("/history/{prompt_id}")
        async def get_history_prompt(request):
            return web.json_response(
                self.prompt_queue.get_history(prompt_id=request.match_info["prompt_id"])
            )

        @routes.post("/history")
        async def post_history(request):
            json_data = await request.json()
            if json_data.get("clear"):
                self.prompt_queue.wipe_history()
            for prompt_id in json_data.get("delete", []):
                self.prompt_queue.delete_history_item(prompt_id)
            return web.Response(status=200)

        @routes.post("/interrupt")
        async def post_interrupt(request):
            try:
                json_data = await request.json()
            except json.JSONDecodeError:
                json_data = {}
            prompt_id = json_data.get("prompt_id") if isinstance(json_data, dict) else None
            if prompt_id:
                running, _ = self.prompt_queue.get_current_queue()
                if any(item[1] == prompt_id for item in running):
                    logging.info("Interrupting prompt %s", prompt_id)
                    execution.progress.interrupt_processing()
                else:
                    logging.info(
                        "Prompt %s is not currently running, skipping interrupt", prompt_id
                    )
            else:
                logging.info("Global interrupt (no prompt_id specified)")
                execution.progress.interrupt_processing()
            return web.Response(status=200)

        @routes.post("/free")
        async def post_free(request):
            json_data = await request.json()
            if json_data.get("unload_models"):
                self.prompt_queue.set_flag("unload_models", True)
            if json_data.get("free_memory"):
                self.prompt_queue.set_flag("free_memory", True)
            return web.Response(status=200)

        @routes.post("/upload/image")
        async def upload_image(request):
            post = await request.post()
            return self.image_upload(post)

        @routes.get("/view")
        async def view_image(request):
            failure = faults.FAULTS.take_view_failure()
            if failure is not None:
                return web.Response(status=failure, text="fault switch view_fail_count")
            return self.view(request.rel_url.query)

        # ---- test-only routes ----
        @routes.get("/_double/faults")
        async def get_faults(request):
            return web.json_response(faults.FAULTS.as_dict())

        @routes.post("/_double/faults")
        async def post_faults(request):
            try:
                faults.FAULTS.update(await request.json())
            except (KeyError, ValueError, TypeError) as error:
                return web.json_response({"error": str(error)}, status=400)
            return web.json_response(faults.FAULTS.as_dict())

        @routes.get("/_double/received/{prompt_id}")
        async def get_received(request):
            received = self.received.get(request.match_info["prompt_id"])
            return web.json_response(received) if received is not None else web.Response(status=404)

    # ---- route bodies ---------------------------------------------------------------------
    def system_stats(self):
        try:
            import psutil

            ram_total, ram_free = psutil.virtual_memory().total, psutil.virtual_memory().available
        except ImportError:
            pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            ram_total = ram_free = pages
        f = faults.FAULTS
        if self.cpu:
            device = {
                "name": "cpu",
                "type": "cpu",
                "index": None,
                "vram_total": ram_total,
                "vram_free": ram_free,
                "torch_vram_total": ram_total,
                "torch_vram_free": ram_free,
            }
        else:
            device = {
                "name": "cuda:0 NVIDIA Test Double : cudaMallocAsync",
                "type": "cuda",
                "index": 0,
                "vram_total": f.vram_total,
                "vram_free": f.vram_free,
                "torch_vram_total": 0,
                "torch_vram_free": 0,
            }
        return {
            "system": {
                "os": sys.platform,
                "ram_total": ram_total,
                "ram_free": ram_free,
                "comfyui_version": COMFYUI_VERSION,
                "required_frontend_version": "1.27.10",
                "python_version": sys.version,
                "pytorch_version": "none (ComfyUI test double)",
                "embedded_python": False,
                "argv": self.argv,
                "machine": platform.machine(),
            },
            "devices": [device],
        }

    def image_upload(self, post):
        image = post.get("image")
        overwrite = post.get("overwrite")
        image_is_duplicate = False
        upload_type = post.get("type")
        upload_type = "input" if upload_type is None else upload_type
        # ComfyUI leaves its folder variable unset for an unknown type and fails with a 500 (quirk).
        upload_dir = {
            "input": folder_paths.get_input_directory(),
            "temp": folder_paths.get_temp_directory(),
            "output": folder_paths.get_output_directory(),
        }[upload_type]
        if not (image is not None and hasattr(image, "file") and image.file):
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        full_output_folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(full_output_folder, filename))
        if os.path.commonpath((upload_dir, filepath)) != upload_dir:
            return web.Response(status=400)
        os.makedirs(full_output_folder, exist_ok=True)
        stem, ext = os.path.splitext(filename)
        data = image.file.read()
        # Only these two spellings overwrite; "True" does not (quirk).
        if not (overwrite is not None and overwrite in ("true", "1")):
            i = 1
            while os.path.exists(filepath):
                with open(filepath, "rb") as f:
                    if hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest():
                        image_is_duplicate = True
                        break
                filename = f"{stem} ({i}){ext}"
                filepath = os.path.join(full_output_folder, filename)
                i += 1
        if not image_is_duplicate:
            with open(filepath, "wb") as f:
                f.write(data)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": upload_type})

    def view(self, query):
        if "filename" not in query:
            return web.Response(status=404)
        filename, output_dir = folder_paths.annotated_filepath(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if output_dir is None:
            output_dir = folder_paths.get_directory_by_type(query.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full_output_dir = os.path.join(output_dir, query["subfolder"])
            if os.path.commonpath((os.path.abspath(full_output_dir), output_dir)) != output_dir:
                return web.Response(status=403)
            output_dir = full_output_dir
        filename = os.path.basename(filename)
        file = os.path.join(output_dir, filename)
        if not os.path.isfile(file):
            return web.Response(status=404)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {
            "text/html",
            "text/html-sandboxed",
            "application/xhtml+xml",
            "text/javascript",
            "text/css",
        }:
            content_type = "application/octet-stream"
        return web.FileResponse(
            file,
            headers={"Content-Disposition": f'filename="{filename}"', "Content-Type": content_type},
        )


def node_info(node_class: str) -> dict:
    cls = nodes.NODE_CLASS_MAPPINGS[node_class]
    inputs = cls.INPUT_TYPES()
    return {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "name": node_class,
        "display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_class, node_class),
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": nodes.BUILTIN_MODULE.get(node_class, "nodes"),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
        "deprecated": False,
        "experimental": False,
        "api_node": False,
    }


def clean_temp(directory: str) -> None:
    """ComfyUI empties its temp folder at start."""
    for path in glob.glob(os.path.join(directory, "*")):
        if os.path.isdir(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
