"""``Studio``: the one API the pages and CLIs use.

Each method takes the acting ``User`` first, reloads it (a disabled account stops working at
once), checks its role in the project, then reads or writes through the small repository modules
inside one ``BEGIN IMMEDIATE`` transaction where it writes. Errors are the ``storage.errors``
classes: ``PermissionDenied``, ``NotFound``, ``InputError``, ``Conflict``, ``LoginThrottled``.

One ``Studio`` may be shared by all threads of a server: each thread gets its own connection.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlite_utils import Database

from storage import (
    annotations,
    auth,
    backup,
    claims,
    display_pyramid,
    images,
    jobs,
    liveness,
    masks,
    permissions,
    predictions,
    projects,
    users,
)
from storage import versions as model_versions
from storage.arguments import MAX_DESCRIPTION, check_integer_arguments, multi_line
from storage.blobs import BlobStore
from storage.config import Settings
from storage.db import connect, now, scalar, transaction
from storage.errors import Conflict, InputError, LoginThrottled, PermissionDenied
from storage.migrations import migrate
from storage.records import (
    KINDS,
    SOURCES,
    Annotation,
    ImageInfo,
    Job,
    ModelVersion,
    Project,
    Suggestion,
    User,
)

if TYPE_CHECKING:
    from spoco_core.axes import ImageMeta
    from storage.channels import ChannelSettings
    from storage.click_masks import ClickSegment
    from storage.imports import ImportReport
    from storage.volumes import VolumeInfo

RESOLUTIONS = ("accepted", "corrected", "background", "skipped")
MAX_LABEL_SECONDS = 24 * 3600.0  # time booked on one label (the Annotate page books at most an hour)


class Studio:
    """Facade over one data directory (SQLite database + blob folders)."""

    def __init__(self, settings: Settings) -> None:
        settings.ensure_dirs()
        backup.check(settings.db_path)  # DatabaseDamaged, naming the backup to restore
        self.settings = settings
        self.blobs = BlobStore(settings.blob_dir)
        self._local = threading.local()
        migrate(self.db)

    @classmethod
    def open(cls, data_dir: Path | str | None = None) -> Studio:
        """Open (creating and migrating as needed) ``data_dir``, else ``SPOCO_DATA_DIR``, else ./data.

        Parameters
        ----------
        data_dir : Path or str, optional
            The data directory: ``studio.sqlite3``, ``blobs/`` and ``logs/`` live in it.

        Returns
        -------
        Studio
            Shareable by all threads of a process.
        """
        return cls(Settings.from_env(data_dir))

    @property
    def data_dir(self) -> Path:
        """The resolved data directory."""
        return self.settings.data_dir

    @property
    def db(self) -> Database:
        """The connection of the calling thread (opened on first use; reopened after a fork)."""
        db = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            db = connect(self.settings.db_path)
            self._local.db = db
            self._local.pid = os.getpid()
        return db

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _actor(self, actor: User) -> User:
        return permissions.fresh_actor(self.db, actor)

    # ------------------------------------------------------------------ users / auth

    def get_user(self, user_id: int) -> User | None:
        """The stored user (for re-checking a session), or None."""
        return users.get(self.db, int(user_id))

    def find_user(self, username: str) -> User | None:
        """The stored user by name (case-insensitive), or None; for trusted code (CLI, demo seeding)."""
        row = users.row_by_name(self.db, (username or "").strip())
        return users.to_user(row) if row else None

    def ensure_admin(self, username: str, password: str | None = None) -> str | None:
        """Create the administrator ``username`` if no user of that name exists.

        Without a password a random one is generated and returned (once; only its hash is
        stored). An existing user is left as it is. Returns the generated password or None.
        """
        name = users.check_username(username)
        if users.row_by_name(self.db, name) is not None:
            return None
        generated = None
        if password is None:
            password = generated = auth.generate_password()
        password_hash = auth.hash_password(password, self.settings.bcrypt_rounds)
        with transaction(self.db) as db:
            if users.row_by_name(db, name) is not None:
                return None
            users.insert(db, name, password_hash, is_admin=True)
        return generated

    def authenticate(self, username: str, password: str, client: str | None = None) -> User:
        """The user for these credentials.

        With ``client`` (the visitor's address, as the log-in page passes it) the failures count
        per username *and client*, plus per client over all usernames (locked after
        ``auth.FREE_CLIENT_FAILURES``): someone failing as ``admin`` elsewhere cannot lock the
        real admin out. Without it they count per username.

        Parameters
        ----------
        username, password : str
            As typed; the username ignores case.
        client : str, optional
            The visitor's address.

        Returns
        -------
        User

        Raises
        ------
        PermissionDenied
            Wrong username or password, or a disabled account.
        LoginThrottled
            After 3 failures within the lock time (``retry_after`` seconds); the password is then not checked.
        """
        name = username.strip() if isinstance(username, str) else ""
        if not name or not isinstance(password, str) or not password:
            raise PermissionDenied("wrong username or password")
        if not users.USERNAME_RE.match(name):
            # no account can have this name: nothing to check, nothing to count or store
            raise PermissionDenied("wrong username or password")
        keys = auth.throttle_keys(name, client)
        wait = max(auth.retry_after(self.db, key) for key in keys)
        if wait > 0:
            raise LoginThrottled(wait)
        row = users.row_by_name(self.db, name)
        if row is None:
            auth.dummy_verify(password, self.settings.bcrypt_rounds)
            ok = False
        else:
            ok = auth.verify_password(password, row["password_hash"])
        if not ok:
            auth.record_failure(self.db, keys[0])
            if len(keys) > 1:
                auth.record_failure(self.db, keys[1], free=auth.FREE_CLIENT_FAILURES)
            raise PermissionDenied("wrong username or password")
        if row["disabled"]:
            raise PermissionDenied(f"the account {row['username']!r} is disabled")
        for key in keys:
            auth.clear_failures(self.db, key)
        return users.to_user(row)

    def start_session(self, actor: User) -> str:
        """Open a log-in session that outlives a page reload.

        Returns the signed cookie value for the browser (``auth.SESSION_COOKIE``); it holds a
        random token, never the password or its hash.
        """
        user = self._actor(actor)
        return auth.start_session(self.db, auth.session_secret(self.data_dir), user.id)

    def resume_session(self, cookie: str | None) -> User | None:
        """Return the user a session cookie stands for, or None.

        None when the cookie is forged, expired or logged out, or the account is disabled.
        """
        user_id = auth.session_user_id(self.db, auth.session_secret(self.data_dir), cookie)
        user = self.get_user(user_id) if user_id is not None else None
        return None if user is None or user.disabled else user

    def end_session(self, cookie: str | None) -> bool:
        """Log out: revoke the session a cookie names, so the cookie never logs in again."""
        return auth.end_session(self.db, auth.session_secret(self.data_dir), cookie)

    def create_user(self, actor: User, username: str, password: str, is_admin: bool = False) -> User:
        """Admin only. Passwords need 8+ characters; names are unique ignoring case (``Conflict``)."""
        permissions.require_admin(self._actor(actor))
        return self.operator_create_user(username, password, is_admin)

    def list_users(self, actor: User) -> list[User]:
        """Admins and project leads (who add members by username)."""
        user = self._actor(actor)
        if not permissions.is_lead_anywhere(self.db, user):
            raise PermissionDenied("only an administrator or a project lead can list users")
        return users.list_all(self.db)

    def set_disabled(self, actor: User, username: str, disabled: bool) -> User:
        """Admin only; a disabled user cannot log in and every call they make is refused."""
        user = self._actor(actor)
        permissions.require_admin(user)
        target = users.by_name(self.db, username)
        if target.id == user.id and disabled:
            raise Conflict("you cannot disable your own account")
        return self.operator_set_disabled(target.username, disabled)

    def set_password(self, actor: User, username: str, password: str) -> None:
        """A user changes their own password; an admin changes anyone's."""
        user = self._actor(actor)
        target = users.by_name(self.db, username)
        if target.id != user.id:
            permissions.require_admin(user)
        password_hash = auth.hash_password(password, self.settings.bcrypt_rounds)
        self.db.execute("UPDATE users SET password_hash = ? WHERE id = ?", [password_hash, target.id])
        auth.clear_failures(self.db, target.username)
        auth.end_user_sessions(self.db, target.id)  # browsers logged in with the old password

    # Operator methods: for the shell CLI (whoever runs it can read the database anyway); no actor.

    def operator_create_user(self, username: str, password: str, is_admin: bool = False) -> User:
        """Create a user without an acting admin (``Conflict`` for a taken name)."""
        name = users.check_username(username)
        password_hash = auth.hash_password(password, self.settings.bcrypt_rounds)
        with transaction(self.db) as db:
            return users.insert(db, name, password_hash, is_admin)

    def operator_set_disabled(self, username: str, disabled: bool) -> User:
        """Disable or enable ``username`` without an acting admin."""
        target = users.by_name(self.db, username)
        self.db.execute("UPDATE users SET disabled = ? WHERE id = ?", [int(bool(disabled)), target.id])
        return users.by_name(self.db, target.username)

    def operator_set_role(self, username: str, project: str | int, role: str) -> Project:
        """Give ``username`` a role (``lead`` or ``annotator``) in a project named ``project``."""
        target = users.by_name(self.db, username)
        found = projects.by_name(self.db, str(project))
        with transaction(self.db) as db:
            projects.set_role(db, target.id, found.id, role)
        return found

    def operator_list_users(self) -> list[User]:
        """Every user, for the CLI."""
        return users.list_all(self.db)

    # ------------------------------------------------------------------ projects / members

    def role(self, actor: User, project_id: int) -> str | None:
        """'lead', 'annotator' or None (admins are lead everywhere)."""
        return permissions.role_of(self.db, self._actor(actor), int(project_id))

    def create_project(self, actor: User, name: str, description: str = "") -> Project:
        """Create a project (admins and leads of any project); the creator becomes its lead.

        Parameters
        ----------
        actor : User
            The acting user (reloaded: a disabled account is refused at once).
        name : str
            Unique, without control characters.
        description : str
            Free text, bounded in length.

        Returns
        -------
        Project

        Raises
        ------
        PermissionDenied
            The actor may not do this (role, disabled account).
        InputError
            A value that is not acceptable; the message says which.
        """
        user = self._actor(actor)
        permissions.require_can_create_project(self.db, user)
        clean = projects.check_name(name)
        with transaction(self.db) as db:
            project_id = projects.insert(
                db, user, clean, multi_line(description, "description", MAX_DESCRIPTION)
            )
        return projects.get(self.db, project_id)

    def list_projects(self, actor: User) -> list[Project]:
        """The actor's projects (admins: all)."""
        return projects.list_for(self.db, self._actor(actor))

    def get_project(self, actor: User, project_id: int) -> Project:
        """One project the actor is a member of."""
        permissions.require_member(self.db, self._actor(actor), int(project_id))
        return projects.get(self.db, int(project_id))

    def add_member(self, actor: User, project_id: int, username: str, role: str) -> None:
        """Lead of the project or admin; adding an existing member changes their role."""
        user = self._actor(actor)
        permissions.require_lead(self.db, user, int(project_id))
        target = users.by_name(self.db, (username or "").strip())
        if target.disabled:
            raise InputError(f"user {target.username!r} is disabled")
        with transaction(self.db) as db:
            projects.set_role(db, target.id, int(project_id), role)

    def remove_member(self, actor: User, project_id: int, username: str) -> None:
        """Lead of the project or admin: ``username`` leaves the project (their labels stay)."""
        user = self._actor(actor)
        permissions.require_lead(self.db, user, int(project_id))
        target = users.by_name(self.db, username)
        self.db.execute(
            "DELETE FROM memberships WHERE user_id = ? AND project_id = ?", [target.id, int(project_id)]
        )

    def list_members(self, actor: User, project_id: int) -> list[dict]:
        """``[{"user_id", "username", "role", "disabled"}]`` for members of the project."""
        permissions.require_member(self.db, self._actor(actor), int(project_id))
        return projects.members(self.db, int(project_id))

    # ------------------------------------------------------------------ images

    def add_image(self, actor: User, project_id: int, name: str, data: bytes) -> ImageInfo:
        """Add one uploaded image file to a project (lead only); see :meth:`add_upload`.

        Validates by decoding (``InputError`` naming the file; nothing stored), keeps the bare
        file name (suffix ``-1``, ``-2`` on a clash) and returns the existing image when the same
        content is already in the project. A stack becomes one image per plane; this returns the
        first.
        """
        return self.add_upload(actor, project_id, name, data)[0][0]

    def add_upload(
        self, actor: User, project_id: int, name: str, data: bytes, as_volume: bool = False
    ) -> tuple[list[ImageInfo], ImageMeta]:
        """Add an uploaded file to a project (lead only): every image it holds.

        Limits (side, decoded bytes of a plane and of the file) are checked from the header
        before decoding. The same content already in the project is returned, not stored again.
        New images get predictions queued when the project has a model.

        Parameters
        ----------
        actor : User
            The acting user (reloaded: a disabled account is refused at once).
        project_id : int
            The project.
        name : str
            The file's name as uploaded (its bare name is kept; ``-1``, ``-2`` on a clash).
        data : bytes
            The file: PNG, JPEG or TIFF (also OME-TIFF and ImageJ stacks).
        as_volume : bool
            A file whose axes include Z becomes one volume image per time point (``Z, Y, X, C``
            with its voxel size, ``storage.volumes``) instead of one image per plane; a 2-D file
            is added as it is either way. The Projects page offers it as its default.

        Returns
        -------
        images : list of ImageInfo
            Every image the upload became (a stack: one per plane, ``stack [z 3 of 5].tif``;
            as volumes: one per time point, ``stack [t 2 of 3].tif``).
        meta : ImageMeta
            The file's layout: axes, whether they were assumed, pixel size.

        Raises
        ------
        PermissionDenied
            The actor may not do this (role, disabled account).
        NotFound
            No such project, image, label, suggestion or job.
        InputError
            The file is not an image this reader knows, is damaged, or exceeds a limit; the
            message names the file.
        """
        user = self._actor(actor)
        permissions.require_lead(self.db, user, int(project_id))
        return self._add_upload(user, int(project_id), name, data, as_volume=as_volume)

    def _add_upload(
        self, user: User, project_id: int, name: str, source: bytes | Path, as_volume: bool = False
    ) -> tuple[list[ImageInfo], ImageMeta]:
        from storage import volumes

        clean = images.clean_name(name)
        upload = images.prepare(
            source,
            clean,
            self.settings.max_side,
            self.settings.max_upload_bytes,
            self.settings.max_plane_bytes,
            self.settings.max_decoded_bytes,
            as_volume=as_volume,
            max_planes=self.settings.max_planes,
        )
        stored = [(item, *self.blobs.put_content(item.data, "images", item.suffix)) for item in upload.images]
        ids: list[int] = []
        with transaction(self.db) as db:
            any_created = False
            for item, sha, blob in stored:
                image_id, created = images.insert_or_existing(
                    db, project_id, user.id, item.name, sha, blob, item.info
                )
                ids.append(image_id)
                any_created = any_created or created
                if created and item.depth:
                    volumes.record(db, image_id, item.depth, item.spacing or (1.0, 1.0, 1.0))
            if any_created:
                self._queue_prediction_for_new_images(db, project_id, user.id)
        return [images.get(self.db, i) for i in ids], upload.meta

    def add_images_from_folder(
        self, actor: User, project_id: int, folder: str | Path, as_volume: bool = False
    ) -> tuple[list[ImageInfo], list[str]]:
        """Add every image file directly in a server folder (lead only).

        PNG, JPEG, TIFF; a stack adds one image per plane (``as_volume``: one volume per time
        point, as :meth:`add_upload`). Bad files are reported in the error
        list, the rest are added. Each file's size and header are checked against the limits
        before it is read.

        Confined to ``SPOCO_IMPORT_ROOT``: without it server-folder import is off
        (``PermissionDenied``); a relative folder is taken inside it; the folder and every file are
        resolved (links followed) and whatever resolves outside the root is refused, a file as an
        entry of the error list.
        """
        from spoco_core.io import list_images as list_image_files

        user = self._actor(actor)
        permissions.require_lead(self.db, user, int(project_id))
        root = import_root()
        if root is None:
            raise PermissionDenied(
                "importing from a server folder is off: the server's administrator sets "
                "SPOCO_IMPORT_ROOT to the folder it may read"
            )
        path = Path(folder).expanduser()
        if not path.is_absolute():
            path = root / path
        try:
            path = path.resolve()
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{folder} is not a folder on the server") from exc
        if not path.is_relative_to(root):
            raise PermissionDenied(f"folders must be inside {root}")
        if not path.is_dir():
            raise InputError(f"{folder} is not a folder on the server")
        added: list[ImageInfo] = []
        errors: list[str] = []
        for file in list_image_files(path):
            try:
                real = file.resolve(strict=True)
            except (OSError, RuntimeError) as exc:
                errors.append(f"{file.name}: cannot read ({getattr(exc, 'strerror', None) or exc})")
                continue
            if not real.is_relative_to(root):
                errors.append(f"{file.name}: links outside {root}; skipped")
                continue
            if not real.is_file():
                errors.append(f"{file.name}: not a regular file; skipped")
                continue
            try:
                added += self._add_upload(user, int(project_id), file.name, real, as_volume=as_volume)[0]
            except InputError as exc:
                errors.append(str(exc))
            except OSError as exc:
                errors.append(f"{file.name}: cannot read ({exc.strerror or exc})")
        return added, errors

    def image_layout(self, actor: User, image_id: int) -> ImageMeta:
        """The stored image's axes, channels, whether its axes were assumed, and pixel size (header only)."""
        self._image_role(actor, image_id)
        row = images.row(self.db, int(image_id))
        return images.layout(self.blobs, row["blob"], row["name"])

    def stack_planes(self, actor: User, image_id: int) -> list[ImageInfo]:
        """The images of the stack ``image_id`` is a plane of, in plane order (for plane navigation).

        ``[image]`` when it is not a plane of a stack.
        """
        self._image_role(actor, image_id)
        return images.stack_planes(self.db, self.blobs, int(image_id))

    def list_images(self, actor: User, project_id: int) -> list[ImageInfo]:
        """The project's images (any member)."""
        permissions.require_member(self.db, self._actor(actor), int(project_id))
        return images.list_for_project(self.db, int(project_id))

    def get_image(self, actor: User, image_id: int) -> ImageInfo:
        """One image (any member of its project)."""
        self._image_role(actor, image_id)
        return images.get(self.db, int(image_id))

    def remove_image(self, actor: User, image_id: int) -> ImageInfo:
        """Remove an image from its project (lead only).

        Its labels (and their history), predictions, suggestions and stored files go with it;
        models trained on its labels stay.
        """
        user, project_id, _ = self._image_role(actor, image_id)
        permissions.require_lead(self.db, user, project_id)
        return images.remove(self.db, self.blobs, int(image_id))

    def set_image_complete(self, actor: User, image_id: int, complete: bool = True) -> ImageInfo:
        """Mark an image complete (every object in it labelled) or take the mark back (any member).

        Training then takes the image's unlabelled pixels as background, and it gets no more
        suggestions.

        Parameters
        ----------
        actor : User
            The acting user.
        image_id : int
            The image.
        complete : bool
            True marks the image complete, False takes the mark back.

        Returns
        -------
        ImageInfo
            The image with its new state.

        Raises
        ------
        PermissionDenied
            The actor is not a member of the image's project.
        NotFound
            No such image.
        InputError
            ``complete`` is not a bool.
        """
        if not isinstance(complete, bool):
            raise InputError(f"complete must be true or false, not {complete!r}")
        user, _, _ = self._image_role(actor, image_id)
        with transaction(self.db) as db:
            images.set_complete(db, int(image_id), user.id, complete)
        return images.get(self.db, int(image_id))

    def load_image(self, actor: User, image_id: int) -> np.ndarray:
        """(C, H, W) float32, percentile-normalised: model input (the project's model channels)."""
        from storage import channels

        _, project_id, _ = self._image_role(actor, image_id)
        row = images.row(self.db, int(image_id))
        _refuse_volume(row, "load_volume")
        chosen = channels.get(self.db, project_id).model_channels
        return images.load_normalised(self.blobs, row["blob"], row["name"], chosen)

    def _display_source(self, actor: User, image_id: int) -> tuple[tuple, Callable[[], np.ndarray]]:
        """The project's display settings for the image, and how to decode its display RGB."""
        from storage import channels

        _, project_id, _ = self._image_role(actor, image_id)
        row = images.row(self.db, int(image_id))
        display = channels.get(self.db, project_id).display
        if row.get("depth") is not None:  # a volume shows its middle plane (thumbnails)
            return display, lambda: np.array(self.volume_display(actor, image_id)[int(row["depth"]) // 2])
        return display, lambda: images.load_display(self.blobs, row["blob"], row["name"], display)

    def display_image(self, actor: User, image_id: int) -> np.ndarray:
        """uint8 (H, W, 3) for rendering (the project's channel colours and contrast, when set)."""
        _, decode = self._display_source(actor, image_id)
        return decode()

    def display_levels(self, actor: User, image_id: int) -> display_pyramid.Levels:
        """``display_image`` as memory-mapped levels, full size first, each half the last.

        A page reads only the pixels it shows; built on the first call for the current settings.
        """
        display, decode = self._display_source(actor, image_id)
        return display_pyramid.display_levels(self.blobs, int(image_id), display, decode)

    def channel_settings(self, actor: User, project_id: int) -> ChannelSettings:
        """Any member: which channels feed the model and how each is shown (storage.channels)."""
        from storage import channels

        permissions.require_member(self.db, self._actor(actor), int(project_id))
        return channels.get(self.db, int(project_id))

    def set_channel_settings(
        self, actor: User, project_id: int, settings: ChannelSettings
    ) -> ChannelSettings:
        """Set which channels feed the model and how each is shown (lead only).

        Model channels apply to training and prediction jobs started from now on (the cached
        embeddings of the project's images are dropped when they change).
        """
        from storage import channels

        user = self._actor(actor)
        permissions.require_lead(self.db, user, int(project_id))
        clean = channels.validate(settings)
        with transaction(self.db) as db:
            before = channels.get(db, int(project_id))
            channels.put(db, int(project_id), clean, user.id)
        if before.model_channels != clean.model_channels:
            ids = {i.id for i in images.list_for_project(self.db, int(project_id))}
            for path in (self.blobs.root / "embeddings").glob("version-*/image-*.npz"):
                if int(path.stem.split("-", 1)[1]) in ids:
                    path.unlink(missing_ok=True)
        return clean

    def image_bytes(self, actor: User, image_id: int) -> tuple[str, bytes]:
        """The original upload as ``(name, bytes)``."""
        self._image_role(actor, image_id)
        row = images.row(self.db, int(image_id))
        return row["name"], self.blobs.read_bytes(row["blob"])

    def _image_role(self, actor: User, image_id: int) -> tuple[User, int, str]:
        user = self._actor(actor)
        project_id = permissions.project_of_image(self.db, int(image_id))
        return user, project_id, permissions.require_member(self.db, user, project_id)

    # ------------------------------------------------------------------ annotations

    def add_annotation(
        self,
        actor: User,
        image_id: int,
        kind: str,
        mask: np.ndarray,
        source: str = "drawn",
        seconds: float = 0.0,
        suggestion_id: int | None = None,
    ) -> Annotation:
        """Save a label on an image (any member).

        Parameters
        ----------
        actor : User
            The acting user (reloaded: a disabled account is refused at once).
        image_id : int
            The image.
        kind, source, seconds, suggestion_id
            See below.
        mask : np.ndarray
            Bool (or 0/1 integer) ``(H, W)`` of the image's shape.
        kind : {"object", "background"}
            An object, or a background mark.
        source : {"drawn", "accepted", "corrected"}
            How the label came about (an accepted suggestion, a corrected one, drawn by hand).
        seconds : float
            Working time spent on it, for the statistics (0 to a bound).
        suggestion_id : int, optional
            The suggestion this answers: it is resolved too ('background' for a background mark,
            else the ``source``; 'drawn' counts as corrected).

        Returns
        -------
        Annotation
            The stored label.

        Raises
        ------
        PermissionDenied
            The actor may not do this (role, disabled account).
        NotFound
            No such project, image, label, suggestion or job.
        InputError
            A value that is not acceptable; the message says which.
        Conflict
            The suggestion is held by a colleague.
        """
        user, _, _ = self._image_role(actor, image_id)
        kind, source, seconds = _check_label_args(kind, source, seconds)
        row = images.row(self.db, int(image_id))
        if row.get("depth") is not None:
            raise InputError(f"{row['name']} is a volume: its labels are 3D (add_volume_annotation)")
        mask = masks.validate(mask, (int(row["height"]), int(row["width"])))
        with transaction(self.db) as db:
            if suggestion_id is not None:
                sug = predictions.suggestion_row(db, int(suggestion_id))
                if int(sug["image_id"]) != int(image_id):
                    raise InputError(f"suggestion {suggestion_id} belongs to another image")
                _require_unclaimed(db, int(suggestion_id), user)
                claims.require_unanswered(sug)
            ann_id = annotations.insert(
                db, int(image_id), kind, mask, source, user.id, seconds, suggestion_id=suggestion_id
            )
            if suggestion_id is not None and sug["status"] == "open":
                status = (
                    "background"
                    if kind == "background"
                    else ("accepted" if source == "accepted" else "corrected")
                )
                predictions.resolve(db, int(suggestion_id), status, user.id)
                claims.drop(db, int(suggestion_id))
        return annotations.get(self.db, ann_id)

    def add_polygon(
        self,
        actor: User,
        image_id: int,
        kind: str,
        points: Sequence[tuple[float, float]],
        source: str = "drawn",
        seconds: float = 0.0,
        suggestion_id: int | None = None,
    ) -> Annotation:
        """Save a label drawn as a polygon (any member); see :meth:`add_annotation`.

        Parameters
        ----------
        actor : User
            The acting user (reloaded: a disabled account is refused at once).
        image_id : int
            The image.
        points : sequence of (float, float)
            ``(x, y)`` pixel coordinates; rasterised, then clipped to the image.
        kind : {"object", "background"}
            An object, or a background mark.
        source : {"drawn", "accepted", "corrected"}
            How the label came about (an accepted suggestion, a corrected one, drawn by hand).
        seconds : float
            Working time spent on it, for the statistics (0 to a bound).
        suggestion_id : int, optional
            The suggestion this answers: it is resolved too ('background' for a background mark,
            else the ``source``; 'drawn' counts as corrected).

        Returns
        -------
        Annotation
            The stored label.

        Raises
        ------
        PermissionDenied
            The actor may not do this (role, disabled account).
        NotFound
            No such project, image, label, suggestion or job.
        InputError
            The polygon lies entirely outside the image, has no area, too many vertices or an absurd extent.
        """
        self._image_role(actor, image_id)
        row = images.row(self.db, int(image_id))
        mask = masks.polygon(points, (int(row["height"]), int(row["width"])))
        return self.add_annotation(actor, image_id, kind, mask, source, seconds, suggestion_id)

    def edit_annotation(
        self, actor: User, annotation_id: int, mask: np.ndarray, seconds: float = 0.0
    ) -> Annotation:
        """Replace a live label's mask: a new row (``parent_id`` = old) and the old one soft-deleted.

        Annotators edit their own labels, leads any. An edited accepted suggestion becomes
        'corrected'.
        """
        user = self._actor(actor)
        project_id, row = permissions.project_of_annotation(self.db, int(annotation_id))
        self._require_may_change(user, project_id, row)
        _, _, seconds = _check_label_args(row["kind"], row["source"], seconds)
        img = images.row(self.db, int(row["image_id"]))
        if img.get("depth") is not None:
            raise InputError(f"{img['name']} is a volume: correct a plane with correct_volume_plane")
        mask = masks.validate(mask, (int(img["height"]), int(img["width"])))
        source = "corrected" if row["source"] == "accepted" else row["source"]
        with transaction(self.db) as db:
            old = annotations.live_row(db, int(annotation_id))
            annotations.soft_delete(db, old["id"], user.id, "edited")
            new_id = annotations.insert(
                db,
                int(old["image_id"]),
                old["kind"],
                mask,
                source,
                user.id,
                seconds,
                parent_id=old["id"],
                suggestion_id=old["suggestion_id"],
            )
        return annotations.get(self.db, new_id)

    def delete_annotation(self, actor: User, annotation_id: int) -> None:
        """Soft delete (kept for history and undo). Annotators delete their own labels, leads any."""
        user = self._actor(actor)
        project_id, row = permissions.project_of_annotation(self.db, int(annotation_id))
        self._require_may_change(user, project_id, row)
        with transaction(self.db) as db:
            annotations.live_row(db, int(annotation_id))
            annotations.soft_delete(db, int(annotation_id), user.id, "deleted")

    def undo_last(self, actor: User, image_id: int) -> bool:
        """Revert the actor's latest change on this image; False if none is left.

        A change is an add, edit, delete, merge or split.
        """
        return self.undo_change(actor, image_id) is not None

    def undo_change(self, actor: User, image_id: int) -> dict | None:
        """Revert the actor's latest change on this image; None when nothing is left.

        Returns what ``redo_change`` needs to re-apply it: ``{"undone": [ids], "restored": [ids]}``.
        """
        user, _, _ = self._image_role(actor, image_id)
        with transaction(self.db) as db:
            change = annotations.undo_change(db, int(image_id), user.id)
            for row in (change or {}).get("rows", []):
                if row["suggestion_id"] is not None and row["parent_id"] is None:
                    predictions.reopen(db, int(row["suggestion_id"]))
        if change is None:
            return None
        return {"undone": change["undone"], "restored": change["restored"]}

    def redo_change(self, actor: User, image_id: int, change: dict) -> bool:
        """Re-apply a change ``undo_change`` took back; False when a later change touched its labels.

        Nothing is changed when False.
        """
        user, _, _ = self._image_role(actor, image_id)
        try:
            ids = [int(i) for i in (*change.get("undone", []), *change.get("restored", []))]
        except (AttributeError, TypeError, ValueError) as exc:
            raise InputError("a change is {'undone': [ids], 'restored': [ids]}") from exc
        with transaction(self.db) as db:
            if not annotations.redo_change(db, int(image_id), user.id, change):
                return False
            for ann_id in ids:
                row = annotations.live_row(db, ann_id) if ann_id in change.get("undone", []) else None
                if row and row["suggestion_id"] is not None and row["parent_id"] is None:
                    status = "background" if row["kind"] == "background" else "accepted"
                    if row["source"] != "accepted" and row["kind"] != "background":
                        status = "corrected"
                    predictions.resolve(db, int(row["suggestion_id"]), status, user.id)
        return True

    def merge_annotations(self, actor: User, keep_id: int, other_id: int, seconds: float = 0.0) -> Annotation:
        """One label from two of the same kind on one image (storage.masks.merge).

        A new version of ``keep_id`` covers both, ``other_id`` is deleted, in one change (one undo
        takes it back). Annotators merge their own labels, leads any.
        """
        user = self._actor(actor)
        rows = []
        for ann_id in (int(keep_id), int(other_id)):
            project_id, row = permissions.project_of_annotation(self.db, ann_id)
            self._require_may_change(user, project_id, row)
            rows.append(row)
        keep, other = rows
        if keep["id"] == other["id"]:
            raise InputError("pick two different labels to merge")
        if keep["image_id"] != other["image_id"] or keep["kind"] != other["kind"]:
            raise InputError("only two labels of the same kind on the same image can be merged")
        _, _, seconds = _check_label_args(keep["kind"], keep["source"], seconds)
        with transaction(self.db) as db:
            old = annotations.live_row(db, int(keep["id"]))
            gone = annotations.live_row(db, int(other["id"]))
            mask = masks.merge(
                masks.decode(masks.from_json(old["rle"])), masks.decode(masks.from_json(gone["rle"]))
            )
            at = now()
            annotations.soft_delete(db, old["id"], user.id, "edited", at)
            annotations.soft_delete(db, gone["id"], user.id, "deleted", at)
            source = "corrected" if old["source"] == "accepted" else old["source"]
            new_id = annotations.insert(
                db,
                int(old["image_id"]),
                old["kind"],
                mask,
                source,
                user.id,
                seconds,
                parent_id=old["id"],
                suggestion_id=old["suggestion_id"],
                at=at,
            )
        return annotations.get(self.db, new_id)

    def split_annotation(
        self, actor: User, annotation_id: int, line: Sequence[tuple[float, float]], seconds: float = 0.0
    ) -> list[Annotation]:
        """Cut a label along a drawn line of (x, y) points (storage.masks.split).

        The largest piece becomes a new version of the label, every other piece a new label of the
        same kind, in one change. A line that separates nothing is an ``InputError``.
        """
        user = self._actor(actor)
        project_id, row = permissions.project_of_annotation(self.db, int(annotation_id))
        self._require_may_change(user, project_id, row)
        _, _, seconds = _check_label_args(row["kind"], row["source"], seconds)
        img = images.row(self.db, int(row["image_id"]))
        shape = (int(img["height"]), int(img["width"]))
        try:
            cut = masks.stroke(line, 0.5, shape)
        except (TypeError, ValueError) as exc:
            raise InputError("a split line is a list of (x, y) points") from exc
        with transaction(self.db) as db:
            old = annotations.live_row(db, int(annotation_id))
            pieces = masks.split(masks.decode(masks.from_json(old["rle"])), cut)
            if len(pieces) < 2:
                raise InputError("the line does not cut the label in two: draw it across the outline")
            at = now()
            annotations.soft_delete(db, old["id"], user.id, "edited", at)
            source = "corrected" if old["source"] == "accepted" else old["source"]
            ids = [
                annotations.insert(
                    db,
                    int(old["image_id"]),
                    old["kind"],
                    piece,
                    source,
                    user.id,
                    seconds if i == 0 else 0.0,
                    parent_id=old["id"] if i == 0 else None,
                    suggestion_id=old["suggestion_id"] if i == 0 else None,
                    at=at,
                )
                for i, piece in enumerate(pieces)
            ]
        return [annotations.get(self.db, i) for i in ids]

    def list_annotations(self, actor: User, image_id: int) -> list[Annotation]:
        """Live labels of the image, oldest first.

        Working time is for leads: for an annotator, colleagues' labels carry ``seconds`` NaN.
        """
        user, _, role = self._image_role(actor, image_id)
        return _own_seconds(annotations.list_live(self.db, int(image_id)), user, role)

    def annotation_history(self, actor: User, annotation_id: int) -> list[Annotation]:
        """The label and the versions it replaced, newest first.

        ``seconds`` as in :meth:`list_annotations`.
        """
        user = self._actor(actor)
        project_id, _ = permissions.project_of_annotation(self.db, int(annotation_id))
        role = permissions.require_member(self.db, user, project_id)
        return _own_seconds(annotations.history(self.db, int(annotation_id)), user, role)

    def sparse_labels(self, actor: User, image_id: int) -> np.ndarray:
        """int32 (H, W): 0 unknown, -1 background, k >= 1 objects."""
        self._image_role(actor, image_id)
        row = images.row(self.db, int(image_id))
        _refuse_volume(row, "volume_sparse_labels")
        return annotations.sparse_labels(self.db, int(image_id), (int(row["height"]), int(row["width"])))

    # ------------------------------------------------------------------ volumes

    def volume_info(self, actor: User, image_id: int) -> VolumeInfo | None:
        """The image as a volume (depth, voxel size), or None for a 2-D image (any member)."""
        from storage import volumes

        self._image_role(actor, image_id)
        return volumes.volume_of(self.db, int(image_id))

    def _volume(self, actor: User, image_id: int) -> tuple[User, VolumeInfo]:
        from storage import volumes

        user, _, _ = self._image_role(actor, image_id)
        return user, volumes.require_volume(self.db, int(image_id))

    def load_volume(self, actor: User, image_id: int) -> np.ndarray:
        """float32 ``(C, Z, Y, X)`` normalised over the volume: model input (the model channels)."""
        from storage import channels, volumes

        _, vol = self._volume(actor, image_id)
        row = images.row(self.db, int(image_id))
        chosen = channels.get(self.db, vol.image.project_id).model_channels
        return volumes.load_normalised(self.blobs, row["blob"], row["name"], chosen)

    def volume_display(self, actor: User, image_id: int) -> np.ndarray:
        """uint8 ``(Z, Y, X, 3)`` memory-mapped read-only: the volume as the project shows it.

        Built on the first call for the current display settings; ``storage.volumes.view`` takes
        an XY, XZ or YZ plane of it.
        """
        from storage import channels, volumes

        _, vol = self._volume(actor, image_id)
        row = images.row(self.db, int(image_id))
        display = channels.get(self.db, vol.image.project_id).display
        return volumes.display_volume(
            self.blobs, int(image_id), display, lambda: volumes.load_raw(self.blobs, row["blob"], row["name"])
        )

    def volume_sparse_labels(self, actor: User, image_id: int) -> np.ndarray:
        """int32 ``(Z, Y, X)``: 0 unknown, -1 background, k >= 1 the k-th live 3D object."""
        from storage import volume_labels

        _, vol = self._volume(actor, image_id)
        return volume_labels.sparse_labels(self.db, vol)

    def add_volume_annotation(
        self,
        actor: User,
        image_id: int,
        kind: str,
        mask: np.ndarray,
        source: str = "drawn",
        seconds: float = 0.0,
        suggestion_id: int | None = None,
    ) -> Annotation:
        """Save one 3D object (or background) of a volume as one label (any member).

        ``mask``: bool ``(Z, Y, X)`` of the volume's shape; the rest as :meth:`add_annotation`
        (a suggestion answered with it is resolved; a colleague's claim is a ``Conflict``).
        """
        from storage import volume_labels

        user, vol = self._volume(actor, image_id)
        kind, source, seconds = _check_label_args(kind, source, seconds)
        clean = volume_labels.validate(mask, vol)
        label = volume_labels.NewLabel(kind, source, seconds, suggestion_id)
        with transaction(self.db) as db:
            ann_id = volume_labels.insert(db, vol, clean, label, user.id)
        return annotations.get(self.db, ann_id)

    def add_volume_mark(
        self, actor: User, image_id: int, z: int, mask: np.ndarray, seconds: float = 0.0
    ) -> Annotation:
        """A background mark drawn on plane ``z`` (``mask`` bool ``(Y, X)``): background in 3D."""
        from storage import volume_labels

        _, vol = self._volume(actor, image_id)
        plane = volume_labels.plane_mask(vol, z, mask)
        return self.add_volume_annotation(actor, image_id, "background", plane, "drawn", seconds)

    def add_interpolated_object(
        self,
        actor: User,
        image_id: int,
        outlines: dict[int, np.ndarray],
        seconds: float = 0.0,
        suggestion_id: int | None = None,
    ) -> Annotation:
        """One 3D object outlined on two or more planes (``{z: bool (Y, X)}``), saved as one label.

        The planes between are interpolated (``spoco_core.interpolate``, signed distances); the
        object spans the first to the last outlined plane.
        """
        from spoco_core.interpolate import interpolate_outlines
        from storage import volume_labels

        _, vol = self._volume(actor, image_id)
        planes = {int(z): volume_labels.plane_mask(vol, z, m)[int(z)] for z, m in dict(outlines).items()}
        try:
            shape = interpolate_outlines(planes, spacing_yx=vol.spacing[1:]).paste(vol.shape)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        return self.add_volume_annotation(actor, image_id, "object", shape, "drawn", seconds, suggestion_id)

    def correct_volume_plane(
        self, actor: User, annotation_id: int, z: int, mask: np.ndarray, seconds: float = 0.0
    ) -> Annotation:
        """Replace plane ``z`` of a 3D label (brush / eraser; ``mask`` bool ``(Y, X)``).

        The other planes stay: a new row (``parent_id`` = old), the old one soft-deleted, as an edit.
        """
        from storage import volume_labels, volumes

        user = self._actor(actor)
        project_id, row = permissions.project_of_annotation(self.db, int(annotation_id))
        self._require_may_change(user, project_id, row)
        _, _, seconds = _check_label_args(row["kind"], row["source"], seconds)
        vol = volumes.require_volume(self.db, int(row["image_id"]))
        plane = volume_labels.plane_mask(vol, z, mask)[int(z)]
        old_mask = volume_labels.object_mask(annotations.get(self.db, int(annotation_id)), vol)
        new_mask = volume_labels.validate(volume_labels.with_plane(old_mask, z, plane), vol)
        source = "corrected" if row["source"] == "accepted" else row["source"]
        label = volume_labels.NewLabel(row["kind"], source, seconds, None, int(row["id"]))
        with transaction(self.db) as db:
            old = annotations.live_row(db, int(annotation_id))
            annotations.soft_delete(db, old["id"], user.id, "edited")
            new_id = volume_labels.insert(db, vol, new_mask, label, user.id)
            db.execute(
                "UPDATE annotations SET suggestion_id = ? WHERE id = ?", [old["suggestion_id"], new_id]
            )
        return annotations.get(self.db, new_id)

    def volume_prediction(self, actor: User, image_id: int) -> np.ndarray | None:
        """The current model's 3D instance labels int32 ``(Z, Y, X)`` for a volume, or None."""
        from spoco_core.volume_io import read_label_volume

        _, vol = self._volume(actor, image_id)
        vid = model_versions.current_id(self.db, vol.image.project_id)
        if vid is None:
            return None
        row = predictions.prediction_row(self.db, int(image_id), int(vid))
        if row is None or not self.blobs.exists(row["labels_blob"]):
            return None
        return read_label_volume(self.blobs.path(row["labels_blob"]))[0]

    def volume_proposals(self, actor: User, image_id: int) -> np.ndarray:
        """3D objects the classical pipeline finds in a volume (int32 ``(Z, Y, X)``).

        Otsu + watershed in physical units (``spoco_core.classical3d``): what the Annotate page
        offers to accept one by one before a project has a model.
        """
        from spoco_core.classical3d import segment_classical_3d

        _, vol = self._volume(actor, image_id)
        return segment_classical_3d(self.load_volume(actor, image_id), vol.spacing)

    def project_stats(self, actor: User, project_id: int) -> dict:
        """Counts of the project's images, labels, models and open suggestions (any member).

        ``n_images, n_objects, n_background, n_labelled_images, total_seconds, per_annotator``
        (list of ``{username, n_objects, n_background, seconds, n_accepted, n_corrected}``),
        ``n_model_versions, current_version, n_open_suggestions``. Working time is for leads: an
        annotator gets ``seconds`` of their own row only (None elsewhere, ``total_seconds`` too).
        """
        user = self._actor(actor)
        role = permissions.require_member(self.db, user, int(project_id))
        pid = int(project_id)
        out = annotations.stats(self.db, pid)
        if role != permissions.LEAD:
            out["total_seconds"] = None
            for row in out.get("per_annotator") or []:
                if str(row.get("username", "")).lower() != user.username.lower():
                    row["seconds"] = None
        current = model_versions.current(self.db, pid)
        out["n_images"] = int(scalar(self.db, "SELECT COUNT(*) FROM images WHERE project_id = ?", [pid]))
        out["n_model_versions"] = int(
            scalar(self.db, "SELECT COUNT(*) FROM model_versions WHERE project_id = ?", [pid])
        )
        out["current_version"] = current.version if current else None
        out["n_open_suggestions"] = (
            int(
                scalar(
                    self.db,
                    "SELECT COUNT(*) FROM suggestions "
                    "WHERE project_id = ? AND model_version_id = ? AND status = 'open'",
                    [pid, current.id],
                )
            )
            if current
            else 0
        )
        return out

    def _require_may_change(self, user: User, project_id: int, row: dict) -> None:
        role = permissions.require_member(self.db, user, project_id)
        if role != permissions.LEAD and int(row["author"]) != user.id:
            raise PermissionDenied("annotators can only change their own labels")

    # ------------------------------------------------------------------ models / jobs

    def enqueue_training(
        self, actor: User, project_id: int, iterations: int = 200, params: dict | None = None
    ) -> Job:
        """Queue a training job on all live labels, warm-started from the current model (lead only).

        Parameters
        ----------
        actor : User
            The acting user (reloaded: a disabled account is refused at once).
        project_id : int
            The project.
        iterations : int
            Training steps (a time budget in ``params``, ``minutes``, replaces them).
        params : dict, optional
            May hold ``iterations, batch_size, patch_size, base_channels, depth, embedding_dim,
            lr, weight_decay, seed, device, amp, n_suggestions, min_size`` and the other
            training settings the Train page offers; each is bounded, and the network and batch
            together by the training memory budget.

        Returns
        -------
        Job
            The queued job; the worker runs it.

        Raises
        ------
        PermissionDenied
            The actor may not do this (role, disabled account).
        NotFound
            No such project, image, label, suggestion or job.
        InputError
            An unknown or out-of-bounds parameter, or a run over the memory budget.
        Conflict
            Another training job of the project is queued or running.
        """
        user = self._actor(actor)
        pid = int(project_id)
        permissions.require_lead(self.db, user, pid)
        checked = jobs.check_train_params(params, iterations)
        _check_training_memory(self.db, pid, checked)
        if not annotations.has_objects(self.db, pid):
            raise InputError("nothing to train on yet: label at least one object first")
        with transaction(self.db) as db:
            job_id = jobs.enqueue(db, pid, "train", checked, user.id, total=checked["iterations"])
        return jobs.get(self.db, job_id)

    def enqueue_prediction(self, actor: User, project_id: int, version_id: int | None = None) -> Job:
        """Lead only. (Re)compute predictions and suggestions of a version (default: current)."""
        user = self._actor(actor)
        pid = int(project_id)
        permissions.require_lead(self.db, user, pid)
        vid = version_id if version_id is not None else model_versions.current_id(self.db, pid)
        if vid is None:
            raise InputError("this project has no model yet: train one first")
        version = model_versions.get(self.db, int(vid))
        if version.project_id != pid:
            raise InputError(f"model version {vid} belongs to another project")
        if not model_versions.has_network(version):
            raise InputError(
                f"version {version.version} is an imported prediction without a network: train a model first"
            )
        with transaction(self.db) as db:
            return jobs.get(db, self._queue_prediction(db, pid, int(vid), user.id))

    def cancel_job(self, actor: User, job_id: int) -> Job:
        """Cancel a job (lead only).

        A queued job is cancelled at once, a running one within a training step; a finished job
        is left as it is.
        """
        user = self._actor(actor)
        permissions.require_lead(self.db, user, permissions.project_of(self.db, "jobs", int(job_id)))
        jobs.request_cancel(self.db, int(job_id))
        return jobs.get(self.db, int(job_id))

    def get_job(self, actor: User, job_id: int) -> Job:
        """One job (any member of its project)."""
        permissions.require_member(
            self.db, self._actor(actor), permissions.project_of(self.db, "jobs", int(job_id))
        )
        return jobs.get(self.db, int(job_id))

    def job_labels(self, actor: User, job_id: int) -> dict:
        """Count the labels a training job trains on (any member).

        Those live when it started, or saved so far while it is queued:
        ``{"objects", "background", "images", "up_to"}`` (``up_to``: epoch seconds).
        """
        permissions.require_member(
            self.db, self._actor(actor), permissions.project_of(self.db, "jobs", int(job_id))
        )
        return jobs.labels_included(self.db, int(job_id))

    def list_jobs(self, actor: User, project_id: int) -> list[Job]:
        """Newest first; training and prediction jobs."""
        permissions.require_member(self.db, self._actor(actor), int(project_id))
        return jobs.list_for_project(self.db, int(project_id))

    def list_model_versions(self, actor: User, project_id: int) -> list[ModelVersion]:
        """Newest first."""
        permissions.require_member(self.db, self._actor(actor), int(project_id))
        return model_versions.list_for_project(self.db, int(project_id))

    def current_model(self, actor: User, project_id: int) -> ModelVersion | None:
        """The version whose predictions and suggestions the pages show, or None."""
        permissions.require_member(self.db, self._actor(actor), int(project_id))
        return model_versions.current(self.db, int(project_id))

    def downloadable_model(self, actor: User, project_id: int) -> ModelVersion | None:
        """Lead only: the version whose checkpoint a download gives, or None before any training.

        The current version; when it is an imported prediction (no network), the newest trained
        version before it, the one training would start from.
        """
        pid = int(project_id)
        permissions.require_lead(self.db, self._actor(actor), pid)
        cur = model_versions.current(self.db, pid)
        if cur is None:
            return None
        trained = [
            v
            for v in model_versions.list_for_project(self.db, pid)
            if v.version <= cur.version and model_versions.has_network(v)
        ]
        return trained[0] if trained else None

    def model_checkpoint(self, actor: User, version_id: int) -> bytes:
        """Lead only: a version's checkpoint file, as ``python -m spoco_core segment --model`` reads it.

        ``InputError`` for an imported prediction (no network) or a checkpoint file that is gone.
        """
        version = model_versions.get(self.db, int(version_id))
        permissions.require_lead(self.db, self._actor(actor), version.project_id)
        if not model_versions.has_network(version):
            raise InputError(f"version {version.version} is an imported prediction: it has no network")
        try:
            return self.blobs.path(version.checkpoint).read_bytes()
        except (OSError, ValueError) as exc:
            raise InputError(f"the checkpoint of version {version.version} cannot be read") from exc

    def set_current_model(self, actor: User, project_id: int, version_id: int) -> ModelVersion:
        """Lead only. Also queues predictions for images this version has not seen."""
        user = self._actor(actor)
        pid = int(project_id)
        permissions.require_lead(self.db, user, pid)
        with transaction(self.db) as db:
            model_versions.set_current(db, pid, int(version_id))
            missing = scalar(
                db,
                "SELECT COUNT(*) FROM images i WHERE i.project_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM predictions p WHERE p.image_id = i.id AND p.model_version_id = ?)",
                [pid, int(version_id)],
            )
            if missing and model_versions.has_network(model_versions.get(db, int(version_id))):
                self._queue_prediction(db, pid, int(version_id), user.id)
        return model_versions.get(self.db, int(version_id))

    def ensure_worker(self) -> int | None:
        """Start ``python -m storage.worker --data-dir D`` detached unless a live worker is registered.

        The log goes to ``D/logs/worker.log``. Returns the new pid or None. Never trains in this
        process.
        """
        return liveness.spawn_if_none(self.db, self.data_dir, self.settings.log_dir / "worker.log")

    def worker_alive(self) -> bool:
        """Whether a worker with a recent heartbeat is registered."""
        return bool(liveness.live_workers(self.db))

    def _queue_prediction(self, db: Database, project_id: int, version_id: int, user_id: int | None) -> int:
        existing = jobs.queued_predict(db, project_id, version_id)
        if existing is not None:
            return int(existing["id"])
        return jobs.enqueue(db, project_id, "predict", {"model_version_id": version_id}, user_id)

    def _queue_prediction_for_new_images(self, db: Database, project_id: int, user_id: int) -> None:
        cur = model_versions.current(db, project_id)
        if cur is not None and model_versions.has_network(cur):  # an imported prediction cannot predict
            self._queue_prediction(db, project_id, cur.id, user_id)

    # ------------------------------------------------------------------ predictions / suggestions

    def prediction(self, actor: User, image_id: int) -> np.ndarray | None:
        """The current model's instance labels for the image (int32, 0 = background), or None."""
        _, project_id, _ = self._image_role(actor, image_id)
        vid = model_versions.current_id(self.db, project_id)
        if vid is None:
            return None
        row = predictions.prediction_row(self.db, int(image_id), int(vid))
        if row is None or not self.blobs.exists(row["labels_blob"]):
            return None
        return self.blobs.read_labels(row["labels_blob"])

    def proposals(self, actor: User, image_id: int) -> np.ndarray:
        """Objects the classical pipeline (Otsu + watershed, spoco_core.classical) finds.

        What the Annotate page offers to accept one by one before a project has a model.
        """
        from spoco_core.classical import segment_classical

        return segment_classical(self.load_image(actor, image_id))

    def click_segment(
        self,
        actor: User,
        image_id: int,
        positive: Sequence[tuple[int, int]],
        negative: Sequence[tuple[int, int]] = (),
    ) -> ClickSegment:
        """The object under ``positive`` (x, y) clicks less the parts under ``negative`` ones.

        Any member. From the current model's cached embeddings (storage.click_masks), or the
        classical proposals under them before a project has a model. Labelled objects' pixels are
        left out. An image whose embeddings are not cached yet is embedded by the worker: the
        answer is then ``source == "pending"`` (an empty mask, a progress ``message``); ask again.
        """
        from storage import channels, click_masks, object_sizes

        user, project_id, _ = self._image_role(actor, image_id)
        row = images.row(self.db, int(image_id))
        sparse = annotations.sparse_labels(self.db, int(image_id), (int(row["height"]), int(row["width"])))
        version = model_versions.current(self.db, project_id)
        chosen = channels.get(self.db, project_id).model_channels
        return click_masks.segment(
            self.blobs,
            version if version is not None and model_versions.has_network(version) else None,
            int(image_id),
            lambda: images.load_normalised(self.blobs, row["blob"], row["name"], chosen),
            sparse,
            positive,
            negative,
            image_key=object_sizes.image_key(row["sha256"], chosen),
            on_missing=lambda: self._click_embedding(user, project_id, version, row),
        )

    def _click_embedding(self, user: User, project_id: int, version: ModelVersion, row: dict) -> ClickSegment:
        """A "pending" answer: the worker's click lane embeds the image (a job queued here).

        Unless one is queued or running already; a job that failed just now is an ``InputError``
        with its reason.
        """
        from storage import click_masks

        image_id = int(row["id"])
        with transaction(self.db) as db:
            job = jobs.active_click_embedding(db, version.id, image_id)
            recent = job is not None and float(job["finished_at"] or 0) > now() - 30.0
            if job is not None and job["status"] == "failed" and recent:
                raise InputError(f"this image could not be embedded for clicks: {job['error']}")
            if job is None or job["status"] not in ("queued", "running"):
                params = {jobs.CLICK_EMBEDDING: version.id, "image_id": image_id}
                job = {"id": jobs.enqueue(db, project_id, "predict", params, user.id)}
        state = jobs.get(self.db, int(job["id"]))
        message = click_masks.pending_message(state, self.worker_alive())
        empty = np.zeros((int(row["height"]), int(row["width"])), dtype=bool)
        return click_masks.ClickSegment(empty, "pending", message=message, job_id=state.id)

    def suggestions(self, actor: User, project_id: int, limit: int = 20) -> list[Suggestion]:
        """Open suggestions of the current model, most uncertain first (any member).

        Objects that were labelled since the ranking (half or more of their pixels) are left out.
        """
        permissions.require_member(self.db, self._actor(actor), int(project_id))
        vid = model_versions.current_id(self.db, int(project_id))
        if vid is None or limit <= 0:
            return []
        out: list[Suggestion] = []
        labelled: dict[int, dict] = {}  # image id -> RLE of its labelled pixels (objects and marks)
        fetch = max(int(limit) * 3, 20)  # some may be dropped below
        for sug in predictions.open_suggestions(self.db, int(project_id), int(vid), fetch):
            if sug.image_id not in labelled:
                shape = (int(sug.rle["size"][0]), int(sug.rle["size"][1]))
                labelled[sug.image_id] = annotations.labelled_rle(self.db, sug.image_id, shape)
            # counted on the run-length codes: listing the queue decodes no mask
            area = masks.area(sug.rle)
            if area and masks.overlap(sug.rle, labelled[sug.image_id]) * 2 >= area:
                continue
            out.append(sug)
            if len(out) >= limit:
                break
        return out

    def resolve_suggestion(self, actor: User, suggestion_id: int, status: str) -> None:
        """Close a suggestion as 'accepted', 'corrected', 'background' or 'skipped' (any member).

        :meth:`add_annotation` with ``suggestion_id`` already does this; call it directly to skip
        a suggestion.
        """
        user = self._actor(actor)
        permissions.require_member(
            self.db, user, permissions.project_of(self.db, "suggestions", int(suggestion_id))
        )
        if status not in RESOLUTIONS:
            raise InputError(f"status must be one of {', '.join(RESOLUTIONS)}, not {status!r}")
        with transaction(self.db) as db:
            _require_unclaimed(db, int(suggestion_id), user)
            claims.require_unanswered(predictions.suggestion_row(db, int(suggestion_id)))
            predictions.resolve(db, int(suggestion_id), status, user.id)
            claims.drop(db, int(suggestion_id))

    def claim_suggestion(
        self,
        actor: User,
        project_id: int,
        prefer: int | None = None,
        limit: int = 50,
        lease_s: float = claims.LEASE_S,
        queue: Sequence[Suggestion] | None = None,
    ) -> Suggestion | None:
        """The suggestion the actor works on now, held for them alone under a lease (any member).

        Taking one releases the actor's other claim in the project; while the lease lasts nobody
        else is handed it or may answer it.

        Parameters
        ----------
        actor : User
            The acting user (reloaded: a disabled account is refused at once).
        project_id : int
            The project.
        prefer : int, optional
            This suggestion if it is open and no one else holds it; else the one the actor holds
            already, else the best-ranked open one (of the first ``limit``) no one else holds.
        limit : int
            How far down the ranking to look.
        lease_s : float
            Lease in seconds, renewed by each call.
        queue : sequence of Suggestion, optional
            What :meth:`suggestions` returned just before, to save reading (and decoding) it
            twice; each pick is checked here.

        Returns
        -------
        Suggestion or None
            None when none is left for the actor.

        Raises
        ------
        PermissionDenied
            The actor may not do this (role, disabled account).
        NotFound
            No such project, image, label, suggestion or job.
        """
        user = self._actor(actor)
        pid = int(project_id)
        if queue is None:
            queue = self.suggestions(user, pid, limit=limit)
        else:
            permissions.require_member(self.db, user, pid)
        candidates = {s.id: s for s in queue}
        with transaction(self.db) as db:
            t = now()
            holders = claims.live_holders(db, pid, t)
            order = [int(prefer)] if prefer is not None else []
            order += [sid for sid, uid in holders.items() if uid == user.id]
            order += list(candidates)
            for sid in order:
                if sid not in candidates or holders.get(sid, user.id) != user.id:
                    continue
                row = predictions.suggestion_row(db, sid)
                if int(row["project_id"]) != pid or row["status"] != "open":
                    continue  # another project's, or answered since the list was read
                claims.take(db, pid, sid, user.id, t, float(lease_s))
                return candidates[sid]
            claims.release_all(db, pid, user.id)
        return None

    def release_suggestions(self, actor: User, project_id: int) -> None:
        """Any member: give back the actor's claim in the project (others may be handed it)."""
        user = self._actor(actor)
        permissions.require_member(self.db, user, int(project_id))
        with transaction(self.db) as db:
            claims.release_all(db, int(project_id), user.id)

    def suggestion_holders(self, actor: User, project_id: int) -> dict[int, tuple[str, float]]:
        """Any member: ``{suggestion_id: (username, lease expiry as epoch seconds)}`` of live claims."""
        permissions.require_member(self.db, self._actor(actor), int(project_id))
        return claims.holder_names(self.db, int(project_id), now())

    # ------------------------------------------------------------------ export

    def import_labels(
        self,
        actor: User,
        project_id: int,
        name: str,
        data: bytes,
        image_id: int | None = None,
        as_prediction: bool = False,
    ) -> ImportReport:
        """Import existing annotations as human labels (lead only), or as a starting prediction.

        Human labels are authored by the lead; a starting prediction's objects are accepted one by
        one by the annotators. Labels identical to ones already there are skipped. A starting
        prediction becomes a new current model version without a network
        (``storage.imports.import_prediction``): its objects are the prediction of the images the
        file names and the open suggestions; other images keep the previous version's; training
        starts from the last trained version.

        Parameters
        ----------
        actor : User
            The acting user (reloaded: a disabled account is refused at once).
        project_id : int
            The project.
        name : str
            The file's name; it decides the format and, for a label image, the image it belongs to.
        data : bytes
            A label image (also a stack), COCO JSON, QuPath GeoJSON, an ImageJ ROI set or a zip of
            label images (see ``storage.imports``).
        image_id : int, optional
            The image the labels belong to, instead of matching by name.
        as_prediction : bool
            Keep the objects as a starting prediction instead of human labels (background marks
            are left out and reported).

        Returns
        -------
        ImportReport
            Objects and background marks added per image, duplicates skipped, and errors.

        Raises
        ------
        PermissionDenied
            The actor may not do this (role, disabled account).
        NotFound
            No such project, image, label, suggestion or job.
        InputError
            An unreadable file or a format this import does not know.
        """
        from storage.imports import import_file, import_prediction

        user = self._actor(actor)
        permissions.require_lead(self.db, user, int(project_id))
        if image_id is not None:
            _refuse_volume(images.row(self.db, int(image_id)), "add_volume_annotation")
        if as_prediction:
            return import_prediction(
                self.db,
                user.id,
                int(project_id),
                images.clean_name(name),
                bytes(data),
                image_id=image_id,
                max_bytes=self.settings.max_decoded_bytes,
                blobs=self.blobs,
            )[0]
        return import_file(
            self.db,
            user.id,
            int(project_id),
            images.clean_name(name),
            bytes(data),
            image_id=image_id,
            max_bytes=self.settings.max_decoded_bytes,
            blobs=self.blobs,
        )

    def export_zip(self, actor: User, project_id: int, ome_zarr: bool = False) -> bytes:
        """The project's labels as one zip (lead only).

        Parameters
        ----------
        actor : User
            The acting user (reloaded: a disabled account is refused at once).
        project_id : int
            The project.
        ome_zarr : bool
            Also every image and its labels as OME-Zarr.

        Returns
        -------
        bytes
            A zip of ``labels/``, ``rois/``, ``geojson/``, ``sparse/``, ``coco.json``,
            ``annotations.json``, ``counts.csv`` (see ``storage.export``).

        Raises
        ------
        PermissionDenied
            The actor may not do this (role, disabled account).
        NotFound
            No such project, image, label, suggestion or job.
        """
        from storage.export import build_zip

        permissions.require_lead(self.db, self._actor(actor), int(project_id))
        return build_zip(self.db, self.blobs, int(project_id), ome_zarr=bool(ome_zarr))

    def export_to_file(self, actor: User, project_id: int, ome_zarr: bool = False) -> Path:
        """Lead only: :meth:`export_zip` written to a file; the path of the finished zip.

        The file goes under ``<data dir>/exports``, image by image, never whole in memory (large
        projects). Exports older than a day are removed when the next one is written.
        """
        from storage.export import export_to_file

        permissions.require_lead(self.db, self._actor(actor), int(project_id))
        return export_to_file(
            self.db, self.blobs, int(project_id), Path(self.data_dir) / "exports", ome_zarr=bool(ome_zarr)
        )


def _refuse_volume(row: dict, instead: str) -> None:
    """A 2-D method asked of a volume image: an ``InputError`` naming the volume method."""
    if row.get("depth") is not None:
        raise InputError(f"{row['name']} is a volume: use {instead} (its labels are 3D)")


def _require_unclaimed(db: Database, suggestion_id: int, user: User) -> None:
    holder = claims.other_holder(db, suggestion_id, user.id, now())
    if holder is not None:
        raise Conflict(f"{holder} is working on this suggested object; please take the next one")


def _own_seconds(labels: list[Annotation], user: User, role: str) -> list[Annotation]:
    """Leads see everyone's working time; others only their own (NaN elsewhere)."""
    if role == permissions.LEAD:
        return labels
    return [a if a.author == user.username else replace(a, seconds=math.nan) for a in labels]


def _check_label_args(kind: str, source: str, seconds: float) -> tuple[str, str, float]:
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if source not in SOURCES:
        raise InputError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    try:
        seconds = float(seconds or 0.0)
    except (TypeError, ValueError) as exc:
        raise InputError("seconds must be a number") from exc
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_LABEL_SECONDS:
        raise InputError(f"seconds must be a number from 0 to {MAX_LABEL_SECONDS:.0f}")
    return kind, source, seconds


def import_root() -> Path | None:
    """The resolved ``SPOCO_IMPORT_ROOT``, or None when unset (server-folder import is then off).

    Read at each import, so a server's administrator can set it without reopening the Studio.
    """
    return Settings.from_env().import_root


def _check_training_memory(db: Database, project_id: int, params: dict) -> None:
    """Raise ``InputError`` when the network and batch these parameters ask for exceed the budget.

    The memory budget of ``spoco_core.budget``; defaults for what the parameters leave out, the
    widest image's channels.
    """
    from spoco_core.budget import check_training_memory
    from spoco_core.model import UNetConfig
    from spoco_core.train import TrainConfig

    model, train = UNetConfig(), TrainConfig()
    channels = scalar(db, "SELECT MAX(channels) FROM images WHERE project_id = ?", [project_id])
    try:
        check_training_memory(
            int(channels or 1),
            int(params.get("base_channels", model.base_channels)),
            int(params.get("depth", model.depth)),
            int(params.get("batch_size", train.batch_size)),
            int(params.get("patch_size", train.patch_size)),
            int(params.get("embedding_dim", model.embedding_dim)),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc


check_integer_arguments(Studio)  # ids, limit, prefer: whole numbers, never a truncated float
