"""Every ``SPOCO_*`` setting of the Studio, read from the environment in one place.

:meth:`Settings.from_env` is the only reader: a ``Studio`` reads it when it opens (the data
directory and its limits); the app, the CLIs and the worker call it for what they start with.
``SPOCO_TRAIN_MEMORY_GB`` is the method's own setting, read by ``spoco_core.budget``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = "./data"
DEFAULT_MAX_SIDE = 8192
DEFAULT_MAX_UPLOAD_MB = 512
DEFAULT_MAX_PLANE_MB = 256
DEFAULT_MAX_DECODED_MB = 2048
DEFAULT_MAX_PLANES = 2000
DEFAULT_BCRYPT_ROUNDS = 12
DEFAULT_ADMIN_USER = "admin"
DEFAULT_BACKUP_HOURS = 6.0
DEFAULT_EMBEDDING_CACHE_MB = 4096
TRUE_WORDS = ("1", "true", "yes")
FALSE_WORDS = ("0", "false", "no")


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, not {raw!r}") from exc


def _env_hours(name: str, default: float) -> float:
    raw = _env(name)
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"{name} must be a number of hours, not {raw!r}") from exc


def _env_flag(name: str, default: bool) -> bool:
    raw = _env(name).lower()
    if not raw:
        return default
    return raw in TRUE_WORDS if default is False else raw not in FALSE_WORDS


def _env_path(name: str) -> Path | None:
    raw = _env(name)
    return Path(raw).expanduser().resolve() if raw else None


@dataclass(frozen=True)
class Settings:
    """The Studio's settings; the SQLite file, blob folders and worker logs sit under ``data_dir``.

    Each field's environment variable is in the comment beside it.
    """

    data_dir: Path  # SPOCO_DATA_DIR (default ./data)
    max_side: int = DEFAULT_MAX_SIDE  # SPOCO_MAX_SIDE: pixels per side of an image
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024  # SPOCO_MAX_UPLOAD_MB
    # SPOCO_MAX_PLANE_MB / SPOCO_MAX_DECODED_MB: decoded size of one plane / of a whole file
    # (pixels x channels x planes x bytes per sample)
    max_plane_bytes: int = DEFAULT_MAX_PLANE_MB * 1024 * 1024
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_MB * 1024 * 1024
    # SPOCO_MAX_PLANES: images one upload may become (a few KB of tiny planes could make thousands)
    max_planes: int = DEFAULT_MAX_PLANES
    bcrypt_rounds: int = DEFAULT_BCRYPT_ROUNDS  # SPOCO_BCRYPT_ROUNDS (4-31; lower it only in tests)
    admin_user: str = DEFAULT_ADMIN_USER  # SPOCO_ADMIN_USER: the first administrator
    # SPOCO_ADMIN_PASSWORD (unset: one is generated, shown once); never in a repr or a log
    admin_password: str | None = field(default=None, repr=False)
    import_root: Path | None = None  # SPOCO_IMPORT_ROOT (unset: no import from server folders)
    backup_hours: float = DEFAULT_BACKUP_HOURS  # SPOCO_BACKUP_HOURS between automatic backups (0: off)
    torch_threads: int | None = None  # SPOCO_TORCH_THREADS: the worker's torch threads
    # SPOCO_EMBEDDING_CACHE_MB: disk the cached embeddings of click to segment may take
    embedding_cache_bytes: int = DEFAULT_EMBEDDING_CACHE_MB * 1024 * 1024
    no_worker: bool = False  # SPOCO_NO_WORKER=1: the app starts no worker
    train_preset: str = "default"  # SPOCO_TRAIN_PRESET: "tiny" gives seconds-long training jobs
    demo_images: int = 8  # SPOCO_DEMO_IMAGES: synthetic images in the demo project
    demo_size: int = 256  # SPOCO_DEMO_SIZE: their side in pixels
    demo_samples: bool = True  # SPOCO_DEMO_SAMPLES=0 leaves scikit-image's samples out

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None) -> Settings:
        """Read every ``SPOCO_*`` variable; ``data_dir``, when given, wins over ``SPOCO_DATA_DIR``.

        Raises ``ValueError`` naming the variable when a number is not one.
        """
        root = data_dir if data_dir is not None else _env("SPOCO_DATA_DIR") or DEFAULT_DATA_DIR
        threads = _env_int("SPOCO_TORCH_THREADS", 0)
        return cls(
            data_dir=Path(root).expanduser().resolve(),
            max_side=_env_int("SPOCO_MAX_SIDE", DEFAULT_MAX_SIDE),
            max_upload_bytes=_env_int("SPOCO_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB) * 1024 * 1024,
            max_plane_bytes=_env_int("SPOCO_MAX_PLANE_MB", DEFAULT_MAX_PLANE_MB) * 1024 * 1024,
            max_decoded_bytes=_env_int("SPOCO_MAX_DECODED_MB", DEFAULT_MAX_DECODED_MB) * 1024 * 1024,
            max_planes=max(1, _env_int("SPOCO_MAX_PLANES", DEFAULT_MAX_PLANES)),
            bcrypt_rounds=max(4, min(31, _env_int("SPOCO_BCRYPT_ROUNDS", DEFAULT_BCRYPT_ROUNDS))),
            admin_user=_env("SPOCO_ADMIN_USER") or DEFAULT_ADMIN_USER,
            admin_password=os.environ.get("SPOCO_ADMIN_PASSWORD") or None,
            import_root=_env_path("SPOCO_IMPORT_ROOT"),
            backup_hours=_env_hours("SPOCO_BACKUP_HOURS", DEFAULT_BACKUP_HOURS),
            torch_threads=max(1, threads) if _env("SPOCO_TORCH_THREADS") else None,
            embedding_cache_bytes=max(0, _env_int("SPOCO_EMBEDDING_CACHE_MB", DEFAULT_EMBEDDING_CACHE_MB))
            * 1024
            * 1024,
            no_worker=_env_flag("SPOCO_NO_WORKER", False),
            train_preset=_env("SPOCO_TRAIN_PRESET").lower() or "default",
            demo_images=_env_int("SPOCO_DEMO_IMAGES", 8),
            demo_size=_env_int("SPOCO_DEMO_SIZE", 256),
            demo_samples=_env_flag("SPOCO_DEMO_SAMPLES", True),
        )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "studio.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.blob_dir, self.log_dir):
            path.mkdir(parents=True, exist_ok=True)
