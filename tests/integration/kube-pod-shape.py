#!/usr/bin/python3
"""The pod of docs/kubernetes/iscsi-mpio-sidecar.yaml as Debian's podman 4.3 can play it.

Used by podman-sidecar.sh: reads the manifest, writes the same objects with only what this
host and podman 4.3 need changed, each change for a reason given below, so that the rest (the
ConfigMap mount, the emptyDir shared by both containers, hostNetwork, the containers'
securityContext, the app's DISK_URI) runs as written.

usage: kube-pod-shape.py MANIFEST OUT IMAGE CLIENT_IMAGE CONFIG SECRETS_DIR DATA_DIR
"""

import sys

import yaml

CLIENT_SCRIPT = """\
set -eu
# The socket appears once the sidecar serves the export (the startupProbe's moment).
i=0
until [ -S /run/iscsi-mpio/lun1.sock ]; do
  i=$((i + 1)); [ "$i" -le 600 ] || { echo "no socket after 60 s"; exit 1; }
  sleep 0.1
done
nbdinfo "$DISK_URI"
nbdcopy /data/in-kube.bin "$DISK_URI"
echo copied
"""


def fail(message):
    sys.exit(f"kube-pod-shape.py: {message}")


def main():
    if len(sys.argv) != 8:
        fail(__doc__.strip().splitlines()[-1])
    manifest, out, image, client, config, secrets_dir, data_dir = sys.argv[1:]
    with open(manifest, encoding="utf-8") as stream:
        documents = [d for d in yaml.safe_load_all(stream) if d]
    with open(config, encoding="utf-8") as stream:
        config_text = stream.read()

    kinds = [d.get("kind") for d in documents]
    if kinds != ["ConfigMap", "Deployment"]:
        fail(f"{manifest}: expected a ConfigMap and a Deployment, found {kinds}")
    config_map, deployment = documents
    if "config.yaml" not in config_map.get("data", {}):
        fail(f"{manifest}: the ConfigMap has no config.yaml")
    # The test's target instead of the example's storage addresses.
    config_map["data"]["config.yaml"] = config_text

    pod = deployment["spec"]["template"]["spec"]
    sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    if len(sidecars) != 1 or sidecars[0].get("name") != "iscsi-mpio":
        fail(f"{manifest}: expected one native sidecar named iscsi-mpio")
    sidecar = sidecars[0]
    # podman 4.3 runs every init container to completion before the others, as Kubernetes
    # before 1.29 does: the sidecar becomes an ordinary container, which the README beside the
    # manifest says to do on older clusters.
    pod["initContainers"] = [c for c in pod["initContainers"] if c is not sidecar]
    if not pod["initContainers"]:
        del pod["initContainers"]
    del sidecar["restartPolicy"]
    sidecar["image"] = image
    apps = pod["containers"]
    if len(apps) != 1:
        fail(f"{manifest}: expected one application container")
    app = apps[0]
    # The application: an NBD client on DISK_URI, the variable the manifest sets.
    app["image"] = client
    app["command"] = ["/bin/sh", "-c", CLIENT_SCRIPT]
    app.setdefault("volumeMounts", []).append({"name": "test-data", "mountPath": "/data"})
    pod["containers"] = [sidecar, app]

    # podman 4.3 ignores the pod-level runAsUser and runAsGroup; Kubernetes applies them to
    # every container, so they go there.
    pod_context = pod.get("securityContext", {})
    for container in pod["containers"]:
        context = container.setdefault("securityContext", {})
        for key in ("runAsUser", "runAsGroup"):
            if key in pod_context:
                context.setdefault(key, pod_context[key])

    volumes = {v["name"]: v for v in pod["volumes"]}
    if "secret" not in volumes.get("chap", {}):
        fail(f"{manifest}: no Secret volume named chap")
    # podman 4.3 writes a Secret's data into the files still base64-encoded (and stringData
    # not at all): the same files come from a host directory instead.
    volumes["chap"] = {"name": "chap", "hostPath": {"path": secrets_dir, "type": "Directory"}}
    volumes["test-data"] = {
        "name": "test-data",
        "hostPath": {"path": data_dir, "type": "Directory"},
    }
    pod["volumes"] = list(volumes.values())
    # A failed client is reported, not restarted (Kubernetes requires Always in a Deployment).
    pod["restartPolicy"] = "Never"

    with open(out, "w", encoding="utf-8") as stream:
        yaml.safe_dump_all([config_map, deployment], stream, sort_keys=False)


if __name__ == "__main__":
    main()
