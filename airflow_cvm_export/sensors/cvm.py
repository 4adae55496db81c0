"""Sensor waiting for a CVM image export to land in its COS bucket.

The hook, the trigger and the wait engine are imported by the methods that use them: a DAG file
importing this module pays only for building the task (``bench/parse.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import AssetAlias, BaseSensorOperator, PokeReturnValue

if TYPE_CHECKING:
    from airflow.sdk import XComArg

from airflow_cvm_export.hooks import DEFAULT_CONN_ID
from airflow_cvm_export.links.cvm import CosBucketLink, CosObjectsLink, persist_export_links
from airflow_cvm_export.mixins import ExportWaitMixin
from airflow_cvm_export.utils.errors import TencentCloudConfigError
from airflow_cvm_export.utils.lineage import task_lineage
from airflow_cvm_export.utils.outage import DEFAULT_MAX_OUTAGE, Outage
from airflow_cvm_export.utils.records import OBJECTS_XCOM_KEY
from airflow_cvm_export.utils.validation import as_seconds, validate_export_record
from airflow_cvm_export.version_compat import AirflowSkipException, conf

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk.definitions.context import Context
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

    from airflow_cvm_export.hooks.cvm import CvmHook
    from airflow_cvm_export.utils.completion import ExportProgress
    from airflow_cvm_export.utils.records import ExportRecord

__all__ = ["DEFAULT_ASSET_ALIAS", "OBJECTS_XCOM_KEY", "ExportImagesSensor", "with_alias"]

DEFAULT_ASSET_ALIAS = "cvm_export"
# Task state store key (Airflow 3.3+) of an outage a reschedule-mode sensor is riding out:
# {"try_number", "since", "failures"}. XComs cannot carry it: Airflow clears them at every reschedule.
OUTAGE_KEY = "cvm_export_outage"


def __getattr__(name: str) -> Any:
    """``export_assets`` (0.1.0 defined it here) now lives in the wait engine, loaded on first use."""
    if name == "export_assets":
        from airflow_cvm_export.utils.waiting import export_assets

        return export_assets
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def with_alias(outlets: Any, asset_alias: str | None) -> list[Any]:
    """``outlets`` as a list, with ``AssetAlias(asset_alias)`` added unless ``asset_alias`` is None or already there."""
    outlets = list(outlets) if isinstance(outlets, list | tuple) else [outlets] if outlets else []
    if asset_alias and AssetAlias(asset_alias) not in outlets:
        outlets.append(AssetAlias(asset_alias))
    return outlets


class _AliasedPartial:
    """``ExportImagesSensor.partial``: the SDK's ``partial()``, with the sensor's asset alias added to ``outlets``.

    A mapped task's outlets are its ``partial()`` arguments, and only those reach the serialized DAG
    (and so the scheduler and the UI). Give ``asset_alias`` there, not in ``expand()``: a mapped
    value is only known when the task runs. The SDK's guard stays: on a task (an instance) this is
    the SDK's ``partial``, which raises ``TypeError``.
    """

    def __get__(self, task: Any, cls: type[Any] | None = None) -> Callable[..., OperatorPartial]:
        if task is not None:
            return super(ExportImagesSensor, cast("ExportImagesSensor", task)).partial
        sdk_partial = super(ExportImagesSensor, cast("type[ExportImagesSensor]", cls)).partial

        def partial(**kwargs: Any) -> OperatorPartial:
            outlets = with_alias(kwargs.pop("outlets", None), kwargs.get("asset_alias", DEFAULT_ASSET_ALIAS))
            return sdk_partial(outlets=outlets, **kwargs)

        return partial


class ExportImagesSensor(ExportWaitMixin, BaseSensorOperator):
    """Wait until every file of a CVM image export exists in its COS bucket.

    Every mode (poke, reschedule, deferrable) checks, decides and acts with the same wait engine
    (:class:`~airflow_cvm_export.mixins.ExportWaitMixin`). No public API reports an export's progress, so
    completion is inferred by :func:`~airflow_cvm_export.utils.completion.assess`: each CosPath
    must exist (COS HEAD) and have been written by this export (new or changed since the record's
    ``baseline``; without one, ``Last-Modified`` not before ``started_at``), so an object left by an
    earlier export of the same image never counts. Each check also
    reads DescribeImages: a deleted image or a failed image state fails the task at once
    (``AirflowFailException`` naming the image and its state). A check that fails even after the
    hook's retries does not end the wait when it is transient (network errors, throttling, 5xx):
    the sensor keeps checking on its schedule, logging each failed check, for up to ``max_outage``
    seconds of failures in a row, never past ``timeout`` (see :mod:`~airflow_cvm_export.utils.outage`);
    longer, the try fails and the task's retries reattach. A permanent error (credentials, not found,
    bad parameters) fails the task at once. The same in every mode. Progress (``n of m``) is logged
    on every check.

    On success the XCom ``return_value`` is the list of CosPaths, XCom ``objects`` holds one
    :class:`~airflow_cvm_export.utils.records.ExportedObject` per object, and one asset event per
    image, ``cos://<bucket>/<ImageId>?dag_id=<dag_id>`` (the same URI every run; the run's object
    keys are in the event's ``extra``), is emitted through the asset alias.

    :param export: the export record (:class:`~airflow_cvm_export.utils.records.ExportRecord`) returned by
        :class:`~airflow_cvm_export.operators.cvm.ExportImagesOperator` (``export=start.output``), or a
        JSON string of one. Templated. Either this or the explicit fields below.
    :param export_task_id: ExportImages TaskId, for messages only (explicit fields). Templated.
    :param cos_paths: CosPaths ExportImages returned (explicit fields). Templated.
    :param image_ids: exported image ids (explicit fields). Templated.
    :param bucket_name: bucket the images are exported to (explicit fields). Templated.
    :param started_at: ISO 8601 time with zone, taken just before ExportImages was sent by COS's
        clock (the record's ``started_at`` is); objects whose ``Last-Modified`` is older, to the
        second, do not count (explicit fields). Templated.
    :param file_name_prefixes: the prefixes the export used, which tell the image of each object
        for the asset events (explicit fields). Templated.
    :param region: region of the images and bucket; overrides the record's and the connection's.
        Templated.
    :param tencentcloud_conn_id: connection of type ``tencentcloud``. Templated.
    :param asset_alias: name of the :class:`~airflow.sdk.AssetAlias` added to ``outlets`` through
        which the exported objects are emitted as assets; None to emit none. Not templated; when the
        sensor is mapped, give it to ``partial()``, not ``expand()``. Schedule downstream DAGs on
        ``AssetAlias(<name>)`` (see ``dags/cvm_export_consumer.py``).
    :param max_outage: seconds the checks may keep failing transiently (a cloud or network outage)
        before the try fails; default one hour. Unlike Airflow's ``silent_fail`` (which treats any
        exception of ``poke`` as "not done yet", forever, and not when deferrable), it covers only
        transient failures, is bounded, and works in every mode. In reschedule mode the outage's
        start is kept in the task state store across reschedules on Airflow 3.3+; on older
        Airflow (no store, and XComs are cleared at every reschedule) each reschedule counts anew,
        so only ``timeout`` bounds an outage there.
    :param deferrable: wait in the triggerer instead of a worker slot; defaults to
        ``[operators] default_deferrable``. The export is checked once before deferring, so one
        that has already finished is handed on at once, as in poke and reschedule mode.
    """

    template_fields: Sequence[str] = (
        "export",
        "export_task_id",
        "cos_paths",
        "image_ids",
        "bucket_name",
        "started_at",
        "file_name_prefixes",
        "region",
        "tencentcloud_conn_id",
    )
    template_fields_renderers = {"export": "json", "cos_paths": "json", "image_ids": "json"}
    ui_color = "#e3f0d8"
    operator_extra_links = (CosBucketLink(), CosObjectsLink())

    def __init__(
        self,
        *,
        export: Mapping[str, Any] | str | XComArg | None = None,
        export_task_id: int | str | None = None,
        cos_paths: list[str] | str | None = None,
        image_ids: list[str] | str | None = None,
        bucket_name: str | None = None,
        started_at: str | None = None,
        file_name_prefixes: list[str] | str | None = None,
        region: str | None = None,
        tencentcloud_conn_id: str = DEFAULT_CONN_ID,
        asset_alias: str | None = DEFAULT_ASSET_ALIAS,
        max_outage: float = DEFAULT_MAX_OUTAGE,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(outlets=with_alias(kwargs.pop("outlets", None), asset_alias), **kwargs)
        self.export = export
        self.export_task_id = export_task_id
        self.cos_paths = cos_paths
        self.image_ids = image_ids
        self.bucket_name = bucket_name
        self.started_at = started_at
        self.file_name_prefixes = file_name_prefixes
        self.region = region
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.asset_alias = asset_alias
        self.max_outage = as_seconds(max_outage, "max_outage", zero=True)
        self.deferrable = deferrable
        self._outage: Outage | None = None  # the failed checks in a row of this wait
        self._cvm_exported: tuple[dict[str, Any], list[str]] | None = None  # for the lineage (utils.lineage)

    partial = _AliasedPartial()

    @cached_property
    def _given_export(self) -> ExportRecord:
        explicit = {
            "task_id": self.export_task_id,
            "cos_paths": self.cos_paths,
            "image_ids": self.image_ids,
            "bucket_name": self.bucket_name,
            "started_at": self.started_at,
            "file_name_prefixes": self.file_name_prefixes,
        }
        given = sorted(name for name, value in explicit.items() if value is not None)
        if self.export is not None and given:
            raise TencentCloudConfigError(f"pass either export or the explicit fields, not both (got {given})")
        return validate_export_record(self.export if self.export is not None else explicit)

    @cached_property
    def hook(self) -> CvmHook:
        """The hook, in the sensor's region, else the record's, else the connection's."""
        from airflow_cvm_export.hooks.cvm import CvmHook

        return CvmHook(self.tencentcloud_conn_id, region=self.region or self._given_export["region"])

    @cached_property
    def export_record(self) -> ExportRecord:
        """The validated export record being waited for, with the region actually used."""
        return {**self._given_export, "region": self.hook.config.region}

    def execute(self, context: Context) -> Any:
        """Wait in ``poke``/``reschedule`` mode, or defer to the triggerer when ``deferrable``."""
        if self._given_export["dry_run"]:
            raise AirflowSkipException("the export record is from a dry run: nothing was exported")
        persist_export_links(context, self.export_record)  # the links show while the sensor waits
        if not self.deferrable:
            try:
                return super().execute(context)
            finally:
                self.hook.close()  # the keep-alive session served every poke; release it with the task
        from airflow_cvm_export.triggers.cvm import ExportImagesTrigger

        try:
            progress = self.check_before_deferring(self.export_record)
        finally:
            self.hook.close()  # the trigger has its own session
        if progress is not None:
            return self.publish_export(context, self.export_record, progress.objects)
        self.defer(
            trigger=ExportImagesTrigger(
                export=self.export_record,
                tencentcloud_conn_id=self.tencentcloud_conn_id,
                region=self.export_record["region"],
                poll_interval=self.poke_interval,
                end_time=self._deadline(context),
                max_outage=self.max_outage,
            ),
            method_name="execute_complete",
        )

    def _deadline(self, context: Context) -> float:
        """Epoch seconds at which the wait times out: ``timeout`` after this try started."""
        start = context["ti"].start_date
        return start.timestamp() + self.timeout

    def check(self) -> ExportProgress:
        """One check of the export: see :meth:`~airflow_cvm_export.mixins.ExportWaitMixin.check_export`."""
        return self.check_export(self.export_record)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Return the CosPaths once every object is there; fail at once if the export failed.

        A transiently failed check is "not done yet" for up to ``max_outage`` seconds in a row.
        """
        outage = self._ongoing_outage(context)
        was_out = outage.since is not None
        try:
            finished, _ = self.check_for_end(self.export_record, outage)
        finally:
            if was_out or outage.since is not None:
                self._keep_outage(context, outage)
        if finished is None:
            return False
        return PokeReturnValue(
            is_done=True, xcom_value=self.publish_export(context, self.export_record, finished.objects)
        )

    def _ongoing_outage(self, context: Context) -> Outage:
        """This wait's :class:`~airflow_cvm_export.utils.outage.Outage`: kept by this instance across pokes,
        and in reschedule mode by the task state store (Airflow 3.3+) across reschedules of this try."""
        if self._outage is None:
            self._outage = Outage(self.max_outage)
            store = context.get("task_state_store") if self.reschedule else None
            kept: Any = store.get(OUTAGE_KEY) if store is not None else None  # as _keep_outage stored it
            if kept and kept.get("try_number") == context["ti"].try_number:
                self._outage.since, self._outage.failures = kept["since"], kept["failures"]
        return self._outage

    def _keep_outage(self, context: Context, outage: Outage) -> None:
        """Store the outage for the next reschedule (reschedule mode, Airflow 3.3+), or drop it once over."""
        store = context.get("task_state_store") if self.reschedule else None
        if store is None:
            return
        if outage.since is None:
            store.delete(OUTAGE_KEY)
        else:
            kept: dict[str, Any] = {
                "try_number": context["ti"].try_number,
                "since": outage.since,
                "failures": outage.failures,
            }
            store.set(OUTAGE_KEY, kept)

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> list[str]:
        """Resume after the trigger: see :meth:`~airflow_cvm_export.mixins.ExportWaitMixin.resume_wait`."""
        return self.resume_deferred_wait(context, self.export_record, event)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the images in, the exported COS objects out."""
        return task_lineage(self)
