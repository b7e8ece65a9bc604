"""Start the ComfyUI test double the way ComfyUI starts: `python main.py --listen ... --port ...`.

Runs from this folder with nothing from outside it but aiohttp (and pyyaml for
--extra-model-paths-config), so an image can use this folder as its ComfyUI.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time

import cli_args
import faults
import folder_paths

COMFY_DIR = os.path.dirname(os.path.realpath(__file__))


def setup_logging(level: str, to_stdout: bool) -> None:
    handler = logging.StreamHandler(sys.stdout if to_stdout else sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def apply_faults(args) -> None:
    faults.FAULTS.update(faults.parse(os.environ.get("COMFY_DOUBLE_FAULTS", "")))
    for item in args.double_fault:
        faults.FAULTS.update(faults.parse(item))


def setup_folders(args) -> None:
    if args.base_directory:
        folder_paths.set_base_path(args.base_directory)
    if args.output_directory:
        folder_paths.output_directory = os.path.abspath(args.output_directory)
    if args.input_directory:
        folder_paths.input_directory = os.path.abspath(args.input_directory)
    if args.temp_directory:
        # ComfyUI puts its temp folder *inside* the one given (quirk).
        folder_paths.temp_directory = os.path.join(os.path.abspath(args.temp_directory), "temp")
    import server

    server.clean_temp(folder_paths.temp_directory)
    for folder in (
        folder_paths.input_directory,
        folder_paths.output_directory,
        folder_paths.temp_directory,
        folder_paths.user_directory,
        folder_paths.custom_nodes_directory,
    ):
        os.makedirs(folder, exist_ok=True)
    for name in folder_paths.MODEL_FOLDERS:
        os.makedirs(os.path.join(folder_paths.models_dir, name), exist_ok=True)
    default_yaml = os.path.join(COMFY_DIR, "extra_model_paths.yaml")
    if os.path.isfile(default_yaml):
        folder_paths.load_extra_path_config(default_yaml)
    for group in args.extra_model_paths_config or []:
        for path in group:
            folder_paths.load_extra_path_config(path)


async def serve(args, prompt_server) -> None:
    from aiohttp import web

    runner = web.AppRunner(prompt_server.app, access_log=None)
    await runner.setup()
    addresses = [a.strip() for a in args.listen.split(",") if a.strip()]
    for address in addresses:
        await web.TCPSite(runner, address, args.port).start()
    asyncio.get_running_loop().create_task(prompt_server.publish_loop())
    logging.info("Starting server\n")
    shown = "127.0.0.1" if addresses[0] in ("0.0.0.0", "::") else addresses[0]
    logging.info(
        "To see the GUI go to: http://%s:%d", shown if ":" not in shown else f"[{shown}]", args.port
    )
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    args = cli_args.parser().parse_args(argv)
    setup_logging(args.verbose, args.log_stdout)
    try:
        apply_faults(args)
    except (KeyError, ValueError) as error:
        logging.error("comfy double: bad fault switch: %s", error)
        return 2
    f = faults.FAULTS
    if f.crash_at_start:
        logging.error('Traceback (most recent call last):\n  File "main.py", line 1, in <module>')
        logging.error("RuntimeError: %s", f.crash_at_start)
        return 1
    if f.slow_start_s:
        logging.info("comfy double: slow start, %.1f s before listening", f.slow_start_s)
        time.sleep(f.slow_start_s)
    logging.info("Checkpoint files will always be loaded safely.")
    logging.info("Device: %s", "cpu" if args.cpu else "cuda:0 NVIDIA Test Double : cudaMallocAsync")
    logging.info("Python version: %s", sys.version)
    import server

    logging.info("ComfyUI version: %s (test double)", server.COMFYUI_VERSION)
    setup_folders(args)
    import execution
    import nodes
    import progress

    progress.PREVIEWS = args.preview_method not in (None, "none")
    if not args.disable_all_custom_nodes:
        nodes.load_custom_nodes(folder_paths.custom_nodes_directory)
    if f.never_ready == "no-listen":
        logging.warning("comfy double: never_ready=no-listen, the port will not open")
        threading.Event().wait()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    prompt_server = server.PromptServer(
        loop, ["main.py", *argv], cpu=args.cpu, dont_print=args.dont_print_server
    )
    worker = threading.Thread(
        target=execution.prompt_worker,
        args=(prompt_server.prompt_queue, prompt_server, not args.cache_none),
        daemon=True,
    )
    worker.start()
    try:
        loop.run_until_complete(serve(args, prompt_server))
    except KeyboardInterrupt:
        logging.info("\nStopped server")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
