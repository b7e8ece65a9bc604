"""Output file names, and S3-compatible storage for outputs, configured the way RunPod does.

Names: ComfyUI's own name with the job's token before the extension
(`inv_00001_.png` → `inv_00001_-3f9a2c1b0d4e.png`). Each job saves into its
own folder, so ComfyUI's counter starts again at 00001 in every job; the token
keeps a name unique across the jobs of a worker (and in practice across
workers), so a client that stores results by file name never overwrites one.

When BUCKET_ENDPOINT_URL and both keys are set, each output file is stored at
`<bucket>/<job id>/<file name>` with its content type, and the job returns a
presigned URL (valid 7 days, as the runpod SDK's own helper does) instead of
base64. The client comes from the runpod SDK (`rp_upload.get_boto_client`),
so the endpoint, keys and region are read exactly as RunPod documents them.
"""

from __future__ import annotations

import posixpath
import threading
import time

from handler import settings
from handler.jobs.errors import OutputError

URL_EXPIRY_S = 7 * 24 * 3600

_client = None
_client_key: tuple | None = None


def output_name(entry: dict, job_folder: str) -> str:
    """The name a client sees: the file's path under ComfyUI's output folder, without the
    job's private folder, its stem followed by `-<token>`, the job folder's last part."""
    sub = (entry.get("subfolder") or "").strip("/")
    if sub == job_folder:
        sub = ""
    elif sub.startswith(job_folder + "/"):
        sub = sub[len(job_folder) + 1 :]
    stem, ext = posixpath.splitext(entry["filename"])
    name = f"{stem}-{job_folder.rsplit('-', 1)[-1]}{ext}"
    return f"{sub}/{name}" if sub else name


def configured() -> bool:
    return all(
        s.get()
        for s in (
            settings.BUCKET_ENDPOINT_URL,
            settings.BUCKET_ACCESS_KEY_ID,
            settings.BUCKET_SECRET_ACCESS_KEY,
        )
    )


def _boto():
    global _client, _client_key
    key = (
        settings.BUCKET_ENDPOINT_URL.get(),
        settings.BUCKET_ACCESS_KEY_ID.get(),
        settings.BUCKET_SECRET_ACCESS_KEY.get(),
    )
    if _client is None or key != _client_key:
        from runpod.serverless.utils import rp_upload  # boto3 is heavy: only when used

        _client, _ = rp_upload.get_boto_client()
        _client_key = key
    return _client


def bucket() -> str:
    return settings.BUCKET_NAME.get() or time.strftime("%m-%y")


def upload(
    job_id: str, name: str, data: bytes, content_type: str, deadline: float | None = None
) -> str:
    """Store one output; return a presigned URL for it. Ends by `deadline` (the job's)."""
    import botocore.exceptions

    client = _boto()
    if client is None:
        raise OutputError("outputs: the bucket is configured but boto3 is not installed")
    key = f"{job_id}/{name}"
    endpoint = settings.BUCKET_ENDPOINT_URL.get()

    def put() -> str:
        client.put_object(Bucket=bucket(), Key=key, Body=data, ContentType=content_type)
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket(), "Key": key}, ExpiresIn=URL_EXPIRY_S
        )

    try:
        return _by(deadline, put, f"outputs: uploading {name!r} to {endpoint}")
    except botocore.exceptions.ClientError as err:
        code = err.response.get("Error", {}).get("Code", "error")
        raise OutputError(
            f"outputs: uploading {name!r} to bucket {bucket()!r} at {endpoint} failed ({code})"
        ) from None
    except botocore.exceptions.BotoCoreError as err:
        raise OutputError(
            f"outputs: uploading {name!r} to {endpoint} failed ({type(err).__name__})"
        ) from None


def _by(deadline: float | None, call, what: str):
    """`call()`, given up on at `deadline`: boto3 has no per-call time limit (its own
    timeouts and retries add up to minutes), so the call runs in a thread the job stops
    waiting for; that thread ends on boto3's own timeouts."""
    if deadline is None:
        return call()
    left = deadline - time.monotonic()
    done: dict = {}

    def run() -> None:
        try:
            done["value"] = call()
        except BaseException as exc:  # handed to the job's thread below
            done["error"] = exc

    worker = threading.Thread(target=run, name="bakery-upload", daemon=True)
    worker.start()
    worker.join(max(left, 0))
    if worker.is_alive():
        raise OutputError(f"{what} did not finish within the job's timeout_s")
    if "error" in done:
        raise done["error"]
    return done["value"]
