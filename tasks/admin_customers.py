"""Jobs of the admin's customers section: a bulk action's real run, and an Excel export's build."""

from __future__ import annotations

from app.admin import exports
from app.admin.users import exports as customer_exports  # noqa: F401  (registers the customers export)
from app.kit.jobs import JobContext, registry
from app.users import bulk


@registry.job
async def run_bulk_action(ctx: JobContext, run_id: int) -> str:
    return (await bulk.run(ctx["resources"].sessionmaker, run_id)).value


@registry.job
async def build_excel_export(ctx: JobContext, export_id: int) -> str:
    return (await exports.build_excel(ctx["resources"].sessionmaker, export_id)).value
