# iscsi-mpio as a container image: the sidecar of docs/kubernetes/.
#
#   docker build -t iscsi-mpio .
#   docker run --rm -v /etc/iscsi-mpio:/etc/iscsi-mpio:ro -v /run/iscsi-mpio:/run/iscsi-mpio iscsi-mpio
#
# The image runs `iscsi-mpio attach /etc/iscsi-mpio/config.yaml` as an unprivileged user: an NBD
# export on a unix socket (or TCP) needs no capability. nbd.device (/dev/nbdX) needs root with
# CAP_SYS_ADMIN and the host's /dev: see docs/kubernetes/README.md.
#
# The test command builds this file with podman and runs the sidecar from it
# (tests/integration/podman-sidecar.sh); tests/integration/container-steps.sh also runs its
# build steps without an engine and checks the runtime stage against the binary. Keep each RUN
# a plain shell command, the build tree in /build, the sources in /src.

# ---- build: the toolchain from tools/install-deps.sh, a Release build of iscsi-mpio only
FROM debian:bookworm-slim AS build
WORKDIR /src
# The package list first, alone: the slow apt step stays cached while the sources change.
COPY tools/install-deps.sh tools/install-deps.sh
RUN tools/install-deps.sh --minimal
COPY . .
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DIM_TESTS=OFF \
 && cmake --build /build --target iscsi-mpio \
 && strip /build/tools/iscsi-mpio/iscsi-mpio

# ---- runtime: the binary, exactly the shared libraries `ldd iscsi-mpio` names, and the two it
# opens with dlopen (apt brings what they need): GnuTLS when nbd.tls is on, libsystemd when
# started with NOTIFY_SOCKET or LISTEN_FDS (systemd, or podman --sdnotify). The C++ libraries
# (libstdc++, yaml-cpp, spdlog, fmt) are linked into the binary (docs/architecture.md, "Memory").
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libc6 libisal2 libnettle8 libgnutls30 libsystemd0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/tools/iscsi-mpio/iscsi-mpio /usr/local/bin/iscsi-mpio
# A fixed UID/GID so that Kubernetes' runAsUser/fsGroup can name it. /run/iscsi-mpio holds the
# default NBD and control sockets; mount an emptyDir there to share them with another container.
RUN groupadd --system --gid 10001 iscsi-mpio \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin iscsi-mpio \
 && mkdir -p /etc/iscsi-mpio /run/iscsi-mpio \
 && chown iscsi-mpio:iscsi-mpio /run/iscsi-mpio
USER 10001:10001
# SIGTERM: drain NBD requests, SYNCHRONIZE CACHE, log out (exit 0). Give it the time the drain
# needs (docker stop --time, Kubernetes terminationGracePeriodSeconds): about 60 s at worst with
# the default command_timeout of 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/iscsi-mpio", "attach", "/etc/iscsi-mpio/config.yaml"]
