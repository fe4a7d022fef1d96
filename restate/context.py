"""One use of the tool: settings, one warehouse session, the dbt project, a notifier.

    with Context(settings) as ctx:          # or Context(settings, notifier=...)
        plan = actions.create_plan(ctx, request)
        actions.run_restatement(ctx, plan.restatement_id)

Every action takes a Context (or, for a one-off call, the Settings it is built from).
Inside `with Context(...)` the actions share one warehouse session per thread
(restate.engines.session_scope), parse the dbt manifest once, and publish their events
to the context's notifier (default: the installed one, see restate.events).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from restate.engines import Engine, connect, session_scope
from restate.events import Event, Notifier, publish, use_notifier
from restate.settings import Settings

if TYPE_CHECKING:
    from restate.contract.spec import ProjectContract
    from restate.dbt.runner import DbtProject


class Context:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier
        self._dbt: DbtProject | None = None
        self._manifest: dict[str, Any] | None = None
        self._project: ProjectContract | None = None
        self._stack: ExitStack | None = None

    @classmethod
    def of(cls, value: Context | Settings) -> Context:
        """The context an action was given, or a fresh one for the settings it was given."""
        return value if isinstance(value, Context) else cls(value)

    def __enter__(self) -> Context:
        self._stack = ExitStack()
        self._stack.enter_context(session_scope())
        if self.notifier is not None:
            self._stack.enter_context(use_notifier(self.notifier))
        return self

    def __exit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def session(self, **query_tag: Any) -> Engine:
        """The warehouse session (`with ctx.session() as engine:`): shared inside
        `with Context(...)`, a new one closed by the `with` otherwise."""
        return connect(self.settings, **query_tag)

    @property
    def dbt(self) -> DbtProject:
        if self._dbt is None:
            from restate.dbt.runner import DbtProject

            self._dbt = DbtProject(self.settings)
        return self._dbt

    def manifest(self) -> dict[str, Any]:
        """The project's manifest, parsed once per context (dbt re-parses only on change)."""
        if self._manifest is None:
            self._manifest = self.dbt.manifest()
        return self._manifest

    def last_manifest(self) -> dict[str, Any] | None:
        """The parsed manifest if this context has one, else the one dbt last wrote."""
        if self._manifest is not None:
            return self._manifest
        try:
            return self.dbt.last_manifest()
        except OSError:
            return None

    def project(self) -> ProjectContract:
        if self._project is None:
            from restate.contract.project import check_target
            from restate.contract.spec import read_contract

            manifest = self.manifest()  # parsed once per context, shared with planning
            check_target(self.settings, manifest)
            self._project = read_contract(manifest)
        return self._project

    def publish(self, restatement_id: int, event: Event | str, detail: str | None = None) -> dict[str, Any]:
        """Publish a lifecycle event (after its step committed; never raises)."""
        with ExitStack() as stack:
            if self.notifier is not None and self._stack is None:
                stack.enter_context(use_notifier(self.notifier))
            return publish(self.settings, restatement_id, event, detail=detail, manifest=self.last_manifest())
