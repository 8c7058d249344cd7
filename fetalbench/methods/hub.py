"""Weight files from the Hugging Face hub, or from its local cache offline, sha256 checked.

One way in for every pre-trained weight file fetalbench reads from the hub (timm backbones,
foundation-model encoders): :func:`hub_file` asks ``huggingface_hub.hf_hub_download`` for it
(``local_files_only`` when the hub is unreachable, so a machine without internet uses the cache
that a connected machine filled, ``$HF_HOME/hub``), then checks its bytes. The hub keeps a large
file in Git LFS, and its cache stores it as ``blobs/<sha256>``: a file whose blob name is a
sha256 must hash to it, or it is refused as corrupt. The caller records the repository, the file
and the sha256, so a record says exactly which weights it measured.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from fetalbench.errors import FetalbenchError
from fetalbench.storage.digests import file_sha256

HUB_HOST = "huggingface.co"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@functools.cache
def hub_unreachable_reason() -> str | None:
    """Why the weight hub cannot be used now (``None`` when it can), decided in a few seconds.

    Asked once per process: without it every ImageNet-initialised run would sit through the hub
    client's minute of retries on a machine with no internet.
    """
    for variable in ("HF_HUB_OFFLINE", "FETALBENCH_OFFLINE"):
        if os.environ.get(variable, "0").lower() not in ("0", "", "false", "no"):
            return f"{variable} is set"
    try:
        socket.create_connection((HUB_HOST, 443), timeout=3).close()
    except OSError as error:
        return f"{HUB_HOST} unreachable: {error}"
    return None


@dataclass(frozen=True)
class HubFile:
    """A weight file of a hub repository, present on this machine, and its checked sha256."""

    repository: str
    file: str
    path: Path
    sha256: str


def hub_cache() -> Path:
    """The hub cache ``hf_hub_download`` reads and fills (``$HF_HUB_CACHE``, by default
    ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def verified_sha256(path: Path) -> str:
    """The sha256 of the file at ``path``, checked against its blob name in the hub cache when
    that name is a sha256 (a Git LFS file's); a one-line error when they differ."""
    sha256 = file_sha256(path)
    blob = Path(os.path.realpath(path)).name
    if _SHA256.fullmatch(blob) and blob != sha256:
        raise FetalbenchError(f"{path} does not match the sha256 {blob} the hub gave it "
                              f"(corrupt or replaced); delete it and download it again")
    return sha256


def hub_file(repository: str, filenames: tuple[str, ...], what: str) -> HubFile:
    """The first of ``filenames`` that the hub repository ``repository`` holds, from the hub or,
    offline, from the cache; a one-line error naming the file and where to put it when none
    can be had. ``what`` names the weights in that error (``"ImageNet weights for resnet18"``).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError

    offline = hub_unreachable_reason()
    reason = offline or "not in the repository"
    for filename in filenames:
        try:
            path = Path(hf_hub_download(repository, filename, local_files_only=offline is not None))
        except RemoteEntryNotFoundError:
            continue
        except (HfHubHTTPError, OSError, ValueError) as error:
            reason = offline or f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
            continue
        return HubFile(repository, filename, path, verified_sha256(path))
    folder = "models--" + repository.replace("/", "--")
    raise FetalbenchError(
        f"{what}: {filenames[0]} of the Hugging Face repository {repository} is not in the hub "
        f"cache {hub_cache()} and cannot be downloaded ({reason}); where the hub is reachable run "
        f"`hf download {repository} {filenames[0]}` and copy its cache folder {folder} into "
        f"{hub_cache()} (or point HF_HOME at a cache that holds it)"
    )
