"""The plan: what an export will write, decided before any row is read (pure data, no I/O).

:mod:`.build` decides it (tables, order, columns and their rules, notices);
:mod:`.select` picks the tables; :mod:`.request` says what each reader reads.
"""

from .build import ColumnPlan, Exclusion, Notice, Plan, PlanOptions, TablePlan, build_plan, plan_options

__all__ = [
    "ColumnPlan", "Exclusion", "Notice", "Plan", "PlanOptions", "TablePlan", "build_plan", "plan_options",
]
