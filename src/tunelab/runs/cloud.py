"""The cloud launch sequence, written once for every face and for one job or a grid:

    the provider can train -> it takes the method (DPO: and the model)
    -> lifecycle (the table) -> data check -> cost per job
    -> [dry run / validate only: stop] -> the key -> lifecycle (the endpoint's own date)
    -> adopt jobs the provider already has with these labels (when asked)
    -> one cost confirmation -> upload, deduplicated -> [upload only: stop]
    -> create each job and record it in the registry at once

Every request of one launch trains the same files with the same model on the same target
(a sweep's trials differ in their hyperparameters only). A refusal at any step leaves
nothing behind: nothing is uploaded before the cost is accepted, and no job exists that the
registry does not hold the moment after it is created.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import UsageError
from tunelab.providers import cloud_training, get_provider
from tunelab.providers.base import FileRef, Job, JobSpec, Provider
from tunelab.runs import checks
from tunelab.runs.reporter import LaunchStep, Reporter
from tunelab.runs.request import RunRequest
from tunelab.runs.started import Started


def start(requests: list[RunRequest], reporter: Reporter) -> Started:
    first = requests[0]
    target, intent, config = first.target, first.intent, first.config
    _same_launch(requests)
    checks.require_fine_tuning(target.provider)  # a chat-only endpoint: before anything
    if config.preset:  # local LoRA settings: a cloud job would silently ignore them
        from tunelab.config import refuse_cloud_preset

        refuse_cloud_preset(target.provider, config.preset)
    if config.prompts:  # answered after the job ends (its auto-test): a bad file fails now
        from tunelab.evaluate.prompts import load_prompts

        load_prompts(Path(config.prompts))
    if config.train_file is None:
        raise UsageError("FILE is missing", fix=f"tunelab train FILE --provider "
                                                f"{target.provider}")
    model = _model(first)
    # a method the provider (or, for DPO, the model) does not take: before anything is read
    checks.require_method(target.provider, config.method, model, target.settings)
    base_url = target.settings.base_url
    standing = checks.standing(target.settings.own)  # Azure's --existing-customer
    warning = checks.lifecycle_gate(target.provider, base_url, model,
                                    existing_customer=standing)
    if warning:
        reporter.warn(warning)
    train = Path(config.train_file)
    validation = Path(config.validation_file) if config.validation_file else None
    report = checks.check_data(train, provider=target.provider, model=model,
                               epochs=first.given("epochs"), method=config.method)
    if validation is not None:
        checks.check_data(validation, provider=target.provider, model=model,
                          epochs=first.given("epochs"), role="--validation-file",
                          method=config.method)
    estimates = [checks.estimate_cost(report, provider=target.provider, model=model,
                                      epochs=request.given("epochs"), method=config.method)
                 for request in requests]
    reporter.step(LaunchStep("checked", f"{report.valid_examples} training examples",
                             {"examples": report.valid_examples,
                              "warnings": report.warnings.total,
                              "estimate": checks.total(estimates).as_dict(),
                              "estimates": [estimate.as_dict() for estimate in estimates]}))
    started = Started(report=report, estimates=estimates)
    if intent.dry_run or intent.validate_only:
        if intent.dry_run:
            started.description = _connect(first).describe_request(
                spec(first, model, str(train), str(validation) if validation else None))
        return started
    provider = _connect(first)  # the key: a missing one is named here
    # what the provider would refuse at create time, refused before anything is uploaded
    provider.capabilities.check_suffix(provider.name, config.suffix)
    provider.capabilities.check_full(provider.name, first.given("full"))
    live = checks.live_shutdown(target.provider, base_url, model)
    if live is not None:  # the endpoint's own date wins over the table
        latest = checks.lifecycle_gate(target.provider, base_url, model, live_shutdown=live,
                                       existing_customer=standing)
        if latest and latest != warning:
            reporter.warn(latest)
    adopted = _adopted(provider, requests) if intent.adopt_labelled else {}
    todo = [index for index in range(len(requests)) if index not in adopted]
    if todo:
        reporter.confirm_cost(checks.total([estimates[index] for index in todo]))
    started.uploads = _upload(provider, reporter, train, validation) if todo else {}
    if intent.upload_only:
        return started
    local_files = {"training_file": str(train.resolve())}
    if validation is not None:
        local_files["validation_file"] = str(validation.resolve())
    for index, request in enumerate(requests):
        job = adopted.get(index) or _create(provider, request, model, started.uploads)
        record = cloud_training.record_job(
            provider, job, local_files=local_files,
            config=cloud_training.run_config(spec(request, model, job.training_file or "",
                                                  job.validation_file), estimates[index]),
            metadata=request.labels, hyperparameters=request.shown_hyperparameters)
        verb = "adopted" if index in adopted else "created"
        reporter.step(LaunchStep(verb, f"Fine-tuning job {verb} on {provider.name}: Job ID "
                                       f"{job.id} (status {job.status})", {"job": job.id}))
        started.jobs.append(record)
    return started


def spec(request: RunRequest, model: str, training_file: str,
         validation_file: str | None) -> JobSpec:
    """The one JobSpec of a cloud job: the settings the user gave, nothing defaulted here
    (the provider chooses the rest); the files are local paths (a dry run) or upload ids."""
    multiplier = request.target.learning_rate_multiplier or request.given("learning_rate")
    return JobSpec(base_model=model, training_file=training_file,
                   validation_file=validation_file, suffix=request.config.suffix,
                   epochs=request.given("epochs"), learning_rate=multiplier,
                   batch_size=request.given("batch_size"), seed=request.given("seed"),
                   metadata=dict(request.labels), method=request.config.method,
                   beta=request.config.beta, full=request.given("full"),
                   lora_r=request.given("lora_r"), max_length=request.given("max_length"))


def _model(request: RunRequest) -> str:
    from tunelab.data.pricing import default_model

    return request.config.model or default_model(request.target.provider,
                                                 request.config.method)


def _same_launch(requests: list[RunRequest]) -> None:
    def launch(request: RunRequest) -> tuple:
        target, config = request.target, request.config
        return (target.provider, target.settings, request.intent, config.train_file,
                config.validation_file, config.model, config.method)

    if len({launch(request) for request in requests}) > 1:
        raise ValueError("one launch trains one dataset and model on one target")


def _connect(request: RunRequest) -> Provider:
    return get_provider(request.target.provider, request.target.settings)


def _adopted(provider: Provider, requests: list[RunRequest]) -> dict[int, Job]:
    """The jobs the provider already has for these requests, found by their labels: a launch
    killed between a create and its registry row made them, and they are not paid twice.
    A provider without job metadata (Vertex) finds none."""
    found: dict[int, Job] = {}
    for job in provider.list_jobs(limit=100):
        metadata = job.raw.get("metadata") or {}
        for index, request in enumerate(requests):
            if request.labels and index not in found and all(
                    metadata.get(key) == value for key, value in request.labels.items()):
                found[index] = job
                break
    return found


def _upload(provider: Provider, reporter: Reporter, train: Path,
            validation: Path | None) -> dict[str, FileRef]:
    refs = {}
    for role, path in (("training_file", train), ("validation_file", validation)):
        if path is None:
            continue
        reporter.step(LaunchStep("uploading", f"Uploading {path.name} to {provider.name}..."))
        ref = provider.upload(path)
        verb = "already uploaded, reusing" if ref.reused else "uploaded"
        reporter.step(LaunchStep("uploaded", f"{path.name} {verb}: File ID {ref.id}",
                                 {"role": role, "file": ref.id, "reused": ref.reused}))
        refs[role] = ref
    return refs


def _create(provider: Provider, request: RunRequest, model: str,
            uploads: dict[str, FileRef]) -> Job:
    validation = uploads.get("validation_file")
    return provider.create_job(spec(request, model, uploads["training_file"].id,
                                    validation.id if validation else None))

