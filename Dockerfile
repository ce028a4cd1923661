# The node image for amd64 VMs. Build it with devstack/build-image.sh: the base
# image comes from debootstrap and the wheels from the host, so the build
# needs no registry. Run with the docker socket mounted for the docker executor:
#   docker run -d --name bacalhau -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/bacalhau:/var/lib/bacalhau -p 1234:1234 -p 1235:1235 -p 4001:4001 \
#     bacalhau-py:latest --repo /var/lib/bacalhau --api-keys /var/lib/bacalhau/api-keys
# The API listens on every interface of the container, so serve wants API keys
# (one per line; clients set BACALHAU_API_KEY) or an explicit --api-insecure.
# The repo is mounted at the SAME path as on the host: the docker executor
# asks the host's engine to bind-mount job folders by their path.
FROM bacalhau-py-base:bookworm
COPY .state/wheels /wheels
RUN python3 -m venv /opt/bacalhau && /opt/bacalhau/bin/pip install --no-index --find-links /wheels bacalhau-py \
    && rm -rf /wheels
EXPOSE 1234 1235 4001
ENTRYPOINT ["/opt/bacalhau/bin/bacalhau", "serve", "--api-host", "0.0.0.0", "--swarm-host", "0.0.0.0"]
