"""Ray Serve options of each deployment, per stage (`deployments.<stage>` in the config)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentOptions(_Strict):
    """Ray Serve options of one deployment (see `serve.deployment`)."""

    num_replicas: int | None = Field(None, ge=1)
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int = Field(100, ge=1)
    max_queued_requests: int = Field(-1, ge=-1)
    # What callers get when the queue is full: {status_code: 503|429, retry_after_s: seconds} (Serve's BackpressureConfig).
    backpressure_config: dict[str, Any] | None = None
    # No CPU reserved by default, so the whole graph fits one small node; set num_cpus on clusters.
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0})
    health_check_period_s: float | None = None
    # On a stop (SIGTERM, Ctrl-C, a redeploy) a replica finishes its in-flight requests for up to this long, then is
    # killed (Serve: 20 s). The stop timeout of a container or unit must exceed it (configs/README.md, "Stopping").
    graceful_shutdown_timeout_s: float | None = Field(None, ge=0)
    # A rolling update (`serve deploy` of new code or args) starts replacements before it stops old replicas, up to
    # this share of the target (Serve's default, 0, stops first: a one-replica deployment is gone meanwhile). Not for
    # the embedded stores: their folder has one owner process.
    max_surge_percent: int | None = Field(None, ge=0, le=100)
    # Serve's LoggingConfig, e.g. {enable_access_log: false}; unset: see DeploymentsConfig._access_logs.
    logging_config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DeploymentOptions:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        return self

    def max_replicas(self) -> int:
        if self.autoscaling_config is not None:
            return int(self.autoscaling_config.get("max_replicas", 1))
        return self.num_replicas or 1

    def serve_options(self) -> dict[str, Any]:
        opts = self.model_dump(exclude_none=True)
        if self.num_replicas is None and self.autoscaling_config is None:
            opts["num_replicas"] = 1
        return opts


class DeploymentsConfig(_Strict):
    ingress: DeploymentOptions = DeploymentOptions(max_ongoing_requests=200)
    embedder: DeploymentOptions = DeploymentOptions(max_ongoing_requests=64)
    vector: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100)
    graph: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100)
    bolt_server: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100, health_check_period_s=2.0)
    reranker: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100)
    chat: DeploymentOptions = DeploymentOptions(max_ongoing_requests=100)

    @model_validator(mode="after")
    def _surge(self) -> DeploymentsConfig:
        """Stateless stages surge by default: a rolling update adds the new replica before it stops the old one,
        so a one-replica stage never has none (benchmarks/README.md, "Rolling upgrades"). The stores keep Serve's 0:
        an embedded store's folder has one owner process."""
        for name in type(self).model_fields:
            options: DeploymentOptions = getattr(self, name)
            if name not in ("vector", "bolt_server") and options.max_surge_percent is None:
                options.max_surge_percent = 100
        return self

    @model_validator(mode="after")
    def _access_logs(self) -> DeploymentsConfig:
        """Serve writes an access-log line per call in every replica; the ingress's lines are the HTTP requests,
        the stages' only repeat them per hop (about 5% of a stage call's CPU), so stages default to none."""
        for name in type(self).model_fields:
            options: DeploymentOptions = getattr(self, name)
            if options.logging_config is None:
                options.logging_config = {"enable_access_log": name == "ingress"}
        return self
