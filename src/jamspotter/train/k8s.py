"""Kubernetes Job manifest for an SFT run (e.g. on Nautilus): ConfigMap with the config + a GPU Job.

The Job runs `torchrun -m jamspotter.train sft --resume`, so a restarted pod continues from the
newest complete checkpoint on the PVC instead of starting over.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from jamspotter.errors import JamspotterError


def job_manifest(config_text: str, *, name: str, gpus: int, pvc: str, image: str, cpus: int = 8,
                 memory_gb: int = 64, overrides: list[str] | None = None, mount: str = "/data",
                 gpu_product: str | None = None) -> str:
    """Two YAML documents (ConfigMap, Job) ready for `kubectl apply -f`."""
    if gpus < 1:
        raise JamspotterError("--gpus must be at least 1")
    if not name.replace("-", "").isalnum() or name != name.lower():
        raise JamspotterError(f"job name {name!r} must be lowercase letters, digits and '-'")
    sets = [f"train.output_dir={mount}/runs/{name}", *(overrides or [])]
    args = ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", "jamspotter.train", "sft",
            "--config", "/config/train.yaml", "--resume"]
    for s in sets:
        args += ["--set", s]
    resources = {"nvidia.com/gpu": gpus, "cpu": cpus, "memory": f"{memory_gb}Gi"}
    pod: dict = {
        "restartPolicy": "Never",
        "containers": [{
            "name": "sft", "image": image, "command": args, "workingDir": mount,
            "env": [{"name": "HF_HOME", "value": f"{mount}/hf-cache"},
                    {"name": "TOKENIZERS_PARALLELISM", "value": "false"}],
            "resources": {"requests": resources, "limits": resources},
            "volumeMounts": [{"name": "data", "mountPath": mount}, {"name": "config", "mountPath": "/config"},
                             {"name": "dshm", "mountPath": "/dev/shm"}],
        }],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc}},
                    {"name": "config", "configMap": {"name": f"{name}-config"}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}],
    }
    if gpu_product:
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": [gpu_product]}]}]}}}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config"},
                  "data": {"train.yaml": config_text}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"app": "jamspotter"}},
           "spec": {"backoffLimit": 3, "template": {"metadata": {"labels": {"app": "jamspotter", "job": name}},
                                                    "spec": pod}}}
    return yaml.safe_dump(config_map, sort_keys=False) + "---\n" + yaml.safe_dump(job, sort_keys=False)


def job_from_config(config: str | Path, **kwargs: object) -> str:
    """Read and validate the config (without checking local files) and build the manifest."""
    from jamspotter.train.config import load_config, resolve_config_path

    path = resolve_config_path(config)
    load_config(path, check_files=False, check_model=False)
    return job_manifest(path.read_text(encoding="utf-8"), **kwargs)  # type: ignore[arg-type]
