"""``python -m storage``: operator commands on a data directory.

users add USERNAME [--password P] [--admin]     (prompts for the password when not given)
users list
users set-role USERNAME PROJECT lead|annotator  (PROJECT: name or id)
users disable USERNAME / users enable USERNAME
seed-demo                                       (admin from SPOCO_ADMIN_USER / SPOCO_ADMIN_PASSWORD,
                                                 then the demo project of storage/demo.py)
backup [--keep N]                               (online copy into <data dir>/backups, checked)
check                                           (SQLite's integrity check of the database)
restore BACKUP                                  (app and worker stopped: the backup replaces the database)
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from storage import backup
from storage.config import Settings
from storage.errors import StudioError
from storage.service import Studio


def _read_password() -> str:
    first = getpass.getpass("Password: ")
    if sys.stdin.isatty() and getpass.getpass("Repeat password: ") != first:
        raise StudioError("passwords do not match")
    return first


def cmd_users_add(studio: Studio, args: argparse.Namespace) -> int:
    password = args.password if args.password is not None else _read_password()
    user = studio.operator_create_user(args.username, password, is_admin=args.admin)
    print(f"created {'admin ' if user.is_admin else ''}user {user.username!r} (id {user.id})")
    return 0


def cmd_users_list(studio: Studio, args: argparse.Namespace) -> int:
    rows = studio.operator_list_users()
    width = max([len(u.username) for u in rows] + [8])
    print(f"{'id':>4}  {'username':<{width}}  admin  disabled")
    for u in rows:
        admin, disabled = ("yes" if u.is_admin else "no"), ("yes" if u.disabled else "no")
        print(f"{u.id:>4}  {u.username:<{width}}  {admin:<5}  {disabled}")
    return 0


def cmd_users_set_role(studio: Studio, args: argparse.Namespace) -> int:
    project = studio.operator_set_role(args.username, args.project, args.role)
    print(f"{args.username} is now {args.role} of project {project.name!r} (id {project.id})")
    return 0


def cmd_users_disable(studio: Studio, args: argparse.Namespace) -> int:
    user = studio.operator_set_disabled(args.username, True)
    print(f"disabled {user.username!r}")
    return 0


def cmd_users_enable(studio: Studio, args: argparse.Namespace) -> int:
    user = studio.operator_set_disabled(args.username, False)
    print(f"enabled {user.username!r}")
    return 0


def cmd_seed_demo(studio: Studio, args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    username = settings.admin_user
    generated = studio.ensure_admin(username, settings.admin_password)
    if generated:
        print(f"created admin {username!r} with password: {generated}")
        print("(shown once; only its hash is stored)")
    from storage.demo import seed_demo  # imports the synthetic-image generator: only for this command

    admin = studio.find_user(username)
    assert admin is not None  # ensure_admin created or found it
    project = seed_demo(studio, admin)
    if project is not None:
        print(f"seeded demo project {project.name!r}")
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    path = backup.backup(settings.db_path, keep=args.keep)
    print(f"backed up {settings.db_path} to {path} ({path.stat().st_size / 2**20:.1f} MiB, checked)")
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.db_path.exists():
        raise StudioError(f"no database at {settings.db_path}")
    found = backup.problems(settings.db_path, full=True)
    if found:
        print(f"the database {settings.db_path} is damaged:", *found, sep="\n  ", file=sys.stderr)
        print(backup.restore_hint(settings.db_path), file=sys.stderr)
        return 1
    print(f"{settings.db_path}: ok ({len(backup.list_backups(settings.db_path))} backups)")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    aside = backup.restore(settings.db_path, args.backup)
    print(f"restored {settings.db_path} from {args.backup}; the replaced files are {aside}*")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m storage", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: $SPOCO_DATA_DIR or ./data)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    users = sub.add_parser("users", help="manage user accounts").add_subparsers(
        dest="users_command", required=True
    )
    p = users.add_parser("add", help="create a user")
    p.add_argument("username")
    p.add_argument("--password", help="the password (prompted for when omitted)")
    p.add_argument("--admin", action="store_true", help="make the user an administrator")
    p.set_defaults(func=cmd_users_add)
    users.add_parser("list", help="list users").set_defaults(func=cmd_users_list)
    p = users.add_parser("set-role", help="make a user lead or annotator of a project")
    p.add_argument("username")
    p.add_argument("project", help="project name or id")
    p.add_argument("role", choices=["lead", "annotator"])
    p.set_defaults(func=cmd_users_set_role)
    p = users.add_parser("disable", help="stop a user from logging in")
    p.add_argument("username")
    p.set_defaults(func=cmd_users_disable)
    p = users.add_parser("enable", help="allow a disabled user again")
    p.add_argument("username")
    p.set_defaults(func=cmd_users_enable)

    sub.add_parser("seed-demo", help="ensure the admin account and the demo project").set_defaults(
        func=cmd_seed_demo
    )
    p = sub.add_parser("backup", help="copy the live database into <data dir>/backups and check the copy")
    p.add_argument(
        "--keep", type=int, default=backup.DEFAULT_KEEP, help="backups to keep (default: %(default)s)"
    )
    p.set_defaults(func=cmd_backup, raw=True)
    sub.add_parser("check", help="run SQLite's integrity check on the database").set_defaults(
        func=cmd_check, raw=True
    )
    p = sub.add_parser("restore", help="replace the database by a backup (stop the app and the worker first)")
    p.add_argument("backup", type=Path, help="a file from <data dir>/backups")
    p.set_defaults(func=cmd_restore, raw=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "raw", False):  # on the database file itself: works when it is damaged
        try:
            return int(args.func(Settings.from_env(args.data_dir), args) or 0)
        except StudioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    studio = Studio.open(args.data_dir)
    try:
        return int(args.func(studio, args) or 0)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        studio.close()


if __name__ == "__main__":
    sys.exit(main())
