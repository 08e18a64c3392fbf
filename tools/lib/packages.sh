# shellcheck shell=bash
# The Debian packages twist builds and tests with, and the logic that installs the missing ones.
# Sourced by tools/quickstart and tools/check (one list, one install path).
#
#   build-essential cmake pkg-config   compiler, build system, dependency lookup
#   libopenblas-dev                    CPU backend GEMM; the `cpu` peer of `twist bench gemm`
#   ocl-icd-opencl-dev opencl-headers  OpenCL ICD loader and headers (OpenCL backend)
#   pocl-opencl-icd                    PoCL: an OpenCL device on the CPU, so the OpenCL backend
#                                      and its tests run on machines without a GPU
#   libclblast-dev                     CLBlast: OpenCL vendor GEMM and the `opencl:N` peer
#   clinfo                             to inspect OpenCL platforms when something is off
#   libvulkan-dev                      Vulkan loader and headers (Vulkan backend)
#   glslc                              shaderc's GLSL compiler: shaders/*.comp to SPIR-V at build
#   mesa-vulkan-drivers                lavapipe: a Vulkan device on the CPU, so the Vulkan backend
#                                      and its tests run on machines without a GPU
#   vulkan-validationlayers            VK_LAYER_KHRONOS_validation for the validation test run
#   libcjson-dev                       cJSON: safetensors headers, config.json, tokenizer.json
#   libpcre2-dev                       PCRE2: the tokenizer's GPT-2 pre-tokenisation regex with
#                                      Unicode letter/number classes (ids equal Hugging Face's)
#   libopenmpi-dev openmpi-bin         Open MPI: the MPI transport of `twist ist` and its test
#   iproute2                           ip netns + veth + tc: the two-host MPI test (mpi_hosts), tools/experiments/links
#   python3 python3-torch              the tests that open twist checkpoints in PyTorch
#   chromium                           headless Chromium: the report_render test renders the
#                                      `twist report` page and checks its screenshot
TWIST_PACKAGES=(
    build-essential cmake pkg-config
    libopenblas-dev
    ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev clinfo
    libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers
    libcjson-dev libpcre2-dev
    libopenmpi-dev openmpi-bin iproute2
    python3 python3-torch
    chromium
)

# Prints the packages of TWIST_PACKAGES that dpkg does not report as installed.
twist_missing_packages() {
    local package
    for package in "${TWIST_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            echo "$package"
        fi
    done
}

# Installs what is missing: apt-get update once, then one apt-get install. Calls apt-get only
# when something is missing; uses sudo when not root (non-interactively without a TTY, as in CI).
twist_install_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "twist: not a Debian-based system (no dpkg-query); install the equivalents of:" >&2
        echo "  ${TWIST_PACKAGES[*]}" >&2
        echo "twist: continuing; the build says what it cannot find" >&2
        return 0
    fi
    local missing
    mapfile -t missing < <(twist_missing_packages)
    if ((${#missing[@]} == 0)); then
        echo "twist: all required Debian packages are installed"
        return 0
    fi
    echo "twist: installing missing Debian packages: ${missing[*]}"
    local -a sudo=()
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "twist: not root and sudo is not available; as root, run:" >&2
            echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
            return 1
        fi
        if [[ -t 0 ]]; then sudo=(sudo); else sudo=(sudo -n); fi
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${missing[@]}"
}

# Parallel build jobs: TWIST_JOBS if set, else the number of CPUs.
twist_jobs() {
    echo "${TWIST_JOBS:-$(nproc 2>/dev/null || echo 2)}"
}

# Configures (Release unless the caller passes CMAKE_BUILD_TYPE) and builds one build directory.
# TWIST_CMAKE_ARGS adds options, e.g. TWIST_CMAKE_ARGS="-DTWIST_OPENCL=OFF".
twist_build() {
    local source=$1 build=$2
    shift 2
    local -a extra=()
    if [[ -n ${TWIST_CMAKE_ARGS:-} ]]; then read -r -a extra <<<"$TWIST_CMAKE_ARGS"; fi
    cmake -S "$source" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" "${extra[@]}"
    cmake --build "$build" -j "$(twist_jobs)"
}
