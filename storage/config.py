"""Where data lives and the limits that guard it, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = "./data"
DEFAULT_MAX_SIDE = 8192
DEFAULT_MAX_UPLOAD_MB = 512
DEFAULT_MAX_PLANE_MB = 256
DEFAULT_MAX_DECODED_MB = 2048
DEFAULT_BCRYPT_ROUNDS = 12


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, not {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """One data directory: the SQLite file, blob folders and worker logs all sit under ``data_dir``."""

    data_dir: Path
    max_side: int = DEFAULT_MAX_SIDE
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    max_plane_bytes: int = DEFAULT_MAX_PLANE_MB * 1024 * 1024
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_MB * 1024 * 1024
    bcrypt_rounds: int = DEFAULT_BCRYPT_ROUNDS

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None) -> Settings:
        """``SPOCO_DATA_DIR`` (default ./data), ``SPOCO_MAX_SIDE``, ``SPOCO_MAX_UPLOAD_MB``,
        ``SPOCO_MAX_PLANE_MB`` / ``SPOCO_MAX_DECODED_MB`` (decoded size of one plane / of a whole
        file: pixels x channels x planes x bytes per sample), ``SPOCO_BCRYPT_ROUNDS`` (lower it
        only in tests)."""
        root = data_dir if data_dir is not None else os.environ.get("SPOCO_DATA_DIR") or DEFAULT_DATA_DIR
        return cls(
            data_dir=Path(root).expanduser().resolve(),
            max_side=_env_int("SPOCO_MAX_SIDE", DEFAULT_MAX_SIDE),
            max_upload_bytes=_env_int("SPOCO_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB) * 1024 * 1024,
            max_plane_bytes=_env_int("SPOCO_MAX_PLANE_MB", DEFAULT_MAX_PLANE_MB) * 1024 * 1024,
            max_decoded_bytes=_env_int("SPOCO_MAX_DECODED_MB", DEFAULT_MAX_DECODED_MB) * 1024 * 1024,
            bcrypt_rounds=max(4, min(31, _env_int("SPOCO_BCRYPT_ROUNDS", DEFAULT_BCRYPT_ROUNDS))),
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
