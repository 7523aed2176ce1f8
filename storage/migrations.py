"""Versioned schema. ``MIGRATIONS[i]`` takes a database at version ``i`` to ``i + 1``; opening a
database runs whatever is missing, each step in its own transaction. Never edit a released step:
append a new one."""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database

from storage.db import now, scalar, transaction

Migration = Callable[[Database], None]


def _v1_core(db: Database) -> None:
    """Users, projects, memberships, images and sparse annotations."""
    db.executescript(
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT NOT NULL,
            is_admin INTEGER NOT NULL DEFAULT 0,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            created_by INTEGER REFERENCES users(id)
        );
        CREATE TABLE memberships (
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('lead', 'annotator')),
            created_at REAL NOT NULL,
            PRIMARY KEY (user_id, project_id)
        );
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            blob TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            channels INTEGER NOT NULL,
            dtype TEXT NOT NULL,
            created_at REAL NOT NULL,
            created_by INTEGER REFERENCES users(id),
            UNIQUE (project_id, sha256),
            UNIQUE (project_id, name)
        );
        CREATE TABLE annotations (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('object', 'background')),
            rle TEXT NOT NULL,
            bbox TEXT NOT NULL,
            area INTEGER NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('drawn', 'accepted', 'corrected')),
            author INTEGER NOT NULL REFERENCES users(id),
            created_at REAL NOT NULL,
            seconds REAL NOT NULL DEFAULT 0,
            deleted_at REAL,
            deleted_by INTEGER REFERENCES users(id),
            deleted_reason TEXT CHECK (deleted_reason IN ('deleted', 'edited', 'undone')),
            parent_id INTEGER REFERENCES annotations(id)
        );
        CREATE INDEX annotations_image_live ON annotations(image_id, deleted_at);
        CREATE INDEX annotations_author ON annotations(author);
        CREATE INDEX memberships_project ON memberships(project_id);
        """
    )


def _v2_models(db: Database) -> None:
    """Model versions (with a current one per project), jobs, predictions and suggestions."""
    db.executescript(
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('train', 'predict')),
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            progress REAL NOT NULL DEFAULT 0,
            iteration INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            loss_history TEXT NOT NULL DEFAULT '[]',
            heartbeat_at REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            params TEXT NOT NULL DEFAULT '{}',
            created_by INTEGER REFERENCES users(id),
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            worker_pid INTEGER,
            worker_host TEXT,
            model_version_id INTEGER REFERENCES model_versions(id)
        );
        CREATE INDEX jobs_status ON jobs(status, kind);
        CREATE INDEX jobs_project ON jobs(project_id);
        -- one queued-or-running training job per project, whatever the application does
        CREATE UNIQUE INDEX jobs_one_training ON jobs(project_id)
            WHERE kind = 'train' AND status IN ('queued', 'running');
        CREATE TABLE model_versions (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            parent_id INTEGER REFERENCES model_versions(id),
            checkpoint TEXT NOT NULL,
            created_at REAL NOT NULL,
            n_objects INTEGER NOT NULL DEFAULT 0,
            n_images INTEGER NOT NULL DEFAULT 0,
            metrics TEXT NOT NULL DEFAULT '{}',
            created_by INTEGER REFERENCES users(id),
            job_id INTEGER REFERENCES jobs(id),
            UNIQUE (project_id, version)
        );
        ALTER TABLE projects ADD COLUMN current_model_id INTEGER REFERENCES model_versions(id);
        CREATE TABLE predictions (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            model_version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
            labels_blob TEXT NOT NULL,
            n_objects INTEGER NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (image_id, model_version_id)
        );
        CREATE TABLE suggestions (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            model_version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
            object_id INTEGER NOT NULL,
            score REAL NOT NULL,
            bbox TEXT NOT NULL,
            rle TEXT NOT NULL,
            rank INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'accepted', 'corrected', 'background', 'skipped')),
            resolved_by INTEGER REFERENCES users(id),
            resolved_at REAL,
            created_at REAL NOT NULL
        );
        CREATE INDEX suggestions_open ON suggestions(project_id, model_version_id, status, rank);
        ALTER TABLE annotations ADD COLUMN suggestion_id INTEGER REFERENCES suggestions(id);
        """
    )


def _v3_operations(db: Database) -> None:
    """Login throttling and the registry of live worker processes."""
    db.executescript(
        """
        CREATE TABLE login_failures (
            username TEXT PRIMARY KEY COLLATE NOCASE,
            failures INTEGER NOT NULL DEFAULT 0,
            last_failure_at REAL NOT NULL,
            locked_until REAL NOT NULL DEFAULT 0
        );
        CREATE TABLE workers (
            id INTEGER PRIMARY KEY,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'starting'
                CHECK (status IN ('starting', 'running', 'stopped')),
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            UNIQUE (host, pid)
        );
        """
    )


def _v4_claims(db: Database) -> None:
    """Suggestions claimed by one annotator at a time, under an expiring lease (storage/claims.py)."""
    db.executescript(
        """
        CREATE TABLE suggestion_claims (
            suggestion_id INTEGER PRIMARY KEY REFERENCES suggestions(id) ON DELETE CASCADE,
            project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            claimed_at REAL NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE INDEX suggestion_claims_holder ON suggestion_claims(project_id, user_id);
        """
    )


def _v5_channels(db: Database) -> None:
    """Per project: which channels feed the model and how each is shown (storage/channels.py)."""
    db.executescript(
        """
        CREATE TABLE project_channels (
            project_id INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
            settings TEXT NOT NULL,
            updated_at REAL NOT NULL,
            updated_by INTEGER REFERENCES users(id)
        );
        """
    )


def _v6_sessions(db: Database) -> None:
    """Log-in sessions that outlive a page reload (storage/auth.py): the browser keeps a signed
    cookie naming a session; only the session's hash is stored, and log-out revokes it here."""
    db.executescript(
        """
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE INDEX sessions_user ON sessions(user_id);
        """
    )


def _v7_complete_images(db: Database) -> None:
    """Images marked complete (every object labelled): training takes their unlabelled pixels as
    background (spoco_core.labels.complete_labels)."""
    db.executescript(
        """
        ALTER TABLE images ADD COLUMN complete_at REAL;
        ALTER TABLE images ADD COLUMN complete_by INTEGER REFERENCES users(id);
        """
    )


def _v8_volumes(db: Database) -> None:
    """Volume images (storage.volumes): ``depth`` planes (NULL: a 2-D image) and the voxel size
    ``[z, y, x]`` in micrometres as JSON; a volume's annotations are one row per 3D object."""
    db.executescript(
        """
        ALTER TABLE images ADD COLUMN depth INTEGER;
        ALTER TABLE images ADD COLUMN voxel_size TEXT;
        """
    )


MIGRATIONS: list[Migration] = [
    _v1_core,
    _v2_models,
    _v3_operations,
    _v4_claims,
    _v5_channels,
    _v6_sessions,
    _v7_complete_images,
    _v8_volumes,
]
LATEST = len(MIGRATIONS)


def schema_version(db: Database) -> int:
    """0 for an empty database."""
    if not db["schema_version"].exists():
        return 0
    return int(scalar(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version") or 0)


def migrate(db: Database, target: int | None = None) -> int:
    """Bring the database to ``target`` (default: latest); safe when several processes open it at once
    because each step re-checks the version inside its write transaction."""
    target = LATEST if target is None else target
    if not 0 <= target <= LATEST:
        raise ValueError(f"schema version {target} is unknown; this code knows 0..{LATEST}")
    with transaction(db):
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
    while True:
        with transaction(db):
            current = schema_version(db)
            if current > LATEST:
                raise RuntimeError(
                    f"database schema version {current} is newer than this code ({LATEST}); upgrade the app"
                )
            if current >= target:
                return current
            MIGRATIONS[current](db)
            db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", [current + 1, now()])
