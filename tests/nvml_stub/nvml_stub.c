/* A stand-in libnvidia-ml.so.1 for tests: the NVML entry points the collector calls, with
 * scenarios chosen by environment variables read at nvmlInitWithFlags:
 *   NVML_STUB_INIT         ok (default) | driver_not_loaded | no_permission
 *   NVML_STUB_GPUS         number of GPUs (default 1, at most 16)
 *   NVML_STUB_UNSUPPORTED  comma list of fields answering NOT_SUPPORTED (fan, power, ...)
 *   NVML_STUB_UNSUPPORTED  also: memoryv2version (a driver that rejects the v2 memory struct's version)
 *   NVML_STUB_LOST_INDEX   index of a GPU that is lost while the file NVML_STUB_LOST_FLAG exists
 *                          (its handle cannot be obtained either while the flag exists)
 *   NVML_STUB_RENAME_FLAG  while this file exists, process names read "stub-reused-<pid>" (pid reuse)
 *   NVML_STUB_MIG          comma list of GPU indices with MIG enabled (two instances each)
 *   NVML_STUB_GPM          1: GPM profiling metrics are supported
 *   NVML_STUB_PROCESS_UTIL per-process utilisation samples "gpu:pid:sm:mem:timestamp_us,..." handed out
 *                          by nvmlDeviceGetProcessUtilization when newer than the caller's last-seen
 *                          timestamp (none newer: NOT_FOUND, as NVML answers); "processutil" in
 *                          NVML_STUB_UNSUPPORTED makes the call NOT_SUPPORTED
 * Built with -DSTUB_NO_MEMORY_V2 it plays a driver without nvmlDeviceGetMemoryInfo_v2 at all.
 * nvmlStubCallCount(name) is a test-only export counting calls per entry point. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUCCESS 0
#define ERR_UNINITIALIZED 1
#define ERR_INVALID_ARGUMENT 2
#define ERR_NOT_SUPPORTED 3
#define ERR_NO_PERMISSION 4
#define ERR_NOT_FOUND 6
#define ERR_INSUFFICIENT_SIZE 7
#define ERR_DRIVER_NOT_LOADED 9
#define ERR_GPU_IS_LOST 15
#define ERR_ARGUMENT_VERSION_MISMATCH 25
#define MAX_GPUS 16
#define MIG_SLOTS 7
#define GIB (1024ULL * 1024ULL * 1024ULL)
#define MIB (1024ULL * 1024ULL)
#define RESERVED (512ULL * MIB) /* driver-reserved memory: in v1's "used", apart in v2 */
#define MEMORY_V2 0x02000028U   /* nvmlMemory_v2: sizeof(nvmlMemory_v2_t) | 2 << 24 */

typedef struct device {
    unsigned index;
    int mig_parent; /* -1 for a physical GPU, else the parent's index */
    unsigned mig_slot;
} device;

static device gpus[MAX_GPUS];
static device migs[MAX_GPUS][MIG_SLOTS];
static unsigned gpu_count = 0;
static int initialised = 0;
static char unsupported[512] = "";
static int lost_index = -1;
static const char *lost_flag = NULL;
static const char *rename_flag = NULL;
static char mig_list[128] = "";
static int gpm = 0;
static unsigned long long energy_tick = 0;

#define MAX_UTIL_SAMPLES 64
typedef struct util_entry { unsigned gpu, pid, sm, mem; unsigned long long stamp; } util_entry;
static util_entry util_samples[MAX_UTIL_SAMPLES];
static unsigned util_count = 0;

/* ---- call counting (test-only export) */
#define MAX_NAMES 64
static const char *count_names[MAX_NAMES];
static unsigned long long count_values[MAX_NAMES];

static void count(const char *name) {
    for (int i = 0; i < MAX_NAMES; i++) {
        if (count_names[i] == NULL) { count_names[i] = name; count_values[i] = 1; return; }
        if (strcmp(count_names[i], name) == 0) { count_values[i]++; return; }
    }
}

unsigned long long nvmlStubCallCount(const char *name) {
    for (int i = 0; i < MAX_NAMES && count_names[i]; i++)
        if (strcmp(count_names[i], name) == 0) return count_values[i];
    return 0;
}

/* ---- scenario helpers */
static int listed(const char *list, const char *item) {
    size_t n = strlen(item);
    const char *p = list;
    while ((p = strstr(p, item)) != NULL) {
        int starts = (p == list || p[-1] == ',');
        int ends = (p[n] == '\0' || p[n] == ',');
        if (starts && ends) return 1;
        p += n;
    }
    return 0;
}

static int mig_enabled(unsigned index) {
    char item[16];
    snprintf(item, sizeof item, "%u", index);
    return listed(mig_list, item);
}

static int is_lost(unsigned gpu) {
    return (int)gpu == lost_index && lost_flag && access(lost_flag, F_OK) == 0;
}

/* Common checks for a device call: initialised, valid handle, lost GPU, unsupported field. */
static int check(const device *d, const char *field) {
    if (!initialised) return ERR_UNINITIALIZED;
    if (d == NULL) return ERR_INVALID_ARGUMENT;
    unsigned gpu = d->mig_parent >= 0 ? (unsigned)d->mig_parent : d->index;
    if (is_lost(gpu)) return ERR_GPU_IS_LOST;
    if (field && listed(unsupported, field)) return ERR_NOT_SUPPORTED;
    return SUCCESS;
}

#define CHECK(d, field) do { int rc_ = check((d), (field)); if (rc_) return rc_; } while (0)

static void copy_env(char *dst, size_t size, const char *name) {
    const char *value = getenv(name);
    snprintf(dst, size, "%s", value ? value : "");
}

/* ---- library */
int nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    count("nvmlInitWithFlags");
    const char *mode = getenv("NVML_STUB_INIT");
    if (mode && strcmp(mode, "driver_not_loaded") == 0) return ERR_DRIVER_NOT_LOADED;
    if (mode && strcmp(mode, "no_permission") == 0) return ERR_NO_PERMISSION;
    const char *n = getenv("NVML_STUB_GPUS");
    gpu_count = n ? (unsigned)atoi(n) : 1;
    if (gpu_count > MAX_GPUS) gpu_count = MAX_GPUS;
    copy_env(unsupported, sizeof unsupported, "NVML_STUB_UNSUPPORTED");
    copy_env(mig_list, sizeof mig_list, "NVML_STUB_MIG");
    const char *lost = getenv("NVML_STUB_LOST_INDEX");
    lost_index = lost ? atoi(lost) : -1;
    lost_flag = getenv("NVML_STUB_LOST_FLAG");
    rename_flag = getenv("NVML_STUB_RENAME_FLAG");
    const char *g = getenv("NVML_STUB_GPM");
    gpm = g && strcmp(g, "1") == 0;
    util_count = 0;
    const char *samples = getenv("NVML_STUB_PROCESS_UTIL");
    for (const char *p = samples; p && *p && util_count < MAX_UTIL_SAMPLES;) {
        util_entry *e = &util_samples[util_count];
        if (sscanf(p, "%u:%u:%u:%u:%llu", &e->gpu, &e->pid, &e->sm, &e->mem, &e->stamp) == 5) util_count++;
        p = strchr(p, ',');
        if (p) p++;
    }
    for (unsigned i = 0; i < MAX_GPUS; i++) {
        gpus[i] = (device){i, -1, 0};
        for (unsigned s = 0; s < MIG_SLOTS; s++) migs[i][s] = (device){s, (int)i, s};
    }
    initialised = 1;
    return SUCCESS;
}

int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

int nvmlShutdown(void) {
    count("nvmlShutdown");
    initialised = 0;
    return SUCCESS;
}

const char *nvmlErrorString(int result) {
    switch (result) {
    case SUCCESS: return "Success";
    case ERR_NOT_SUPPORTED: return "Not Supported";
    case ERR_GPU_IS_LOST: return "GPU is lost";
    default: return "Stub Error";
    }
}

int nvmlSystemGetDriverVersion(char *version, unsigned length) {
    if (!initialised) return ERR_UNINITIALIZED;
    snprintf(version, length, "%s", "550.54.15");
    return SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned *n) {
    count("nvmlDeviceGetCount_v2");
    if (!initialised) return ERR_UNINITIALIZED;
    *n = gpu_count;
    return SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned index, device **handle) {
    count("nvmlDeviceGetHandleByIndex_v2");
    if (!initialised) return ERR_UNINITIALIZED;
    if (index >= gpu_count) return ERR_INVALID_ARGUMENT;
    if (is_lost(index)) return ERR_GPU_IS_LOST;
    *handle = &gpus[index];
    return SUCCESS;
}

/* ---- identity */
int nvmlDeviceGetName(device *d, char *name, unsigned length) {
    count("nvmlDeviceGetName");
    CHECK(d, "name");
    snprintf(name, length, "%s", d->mig_parent >= 0 ? "NVIDIA Stub MIG 1g.10gb" : "NVIDIA Stub A100-SXM4-40GB");
    return SUCCESS;
}

int nvmlDeviceGetUUID(device *d, char *uuid, unsigned length) {
    count("nvmlDeviceGetUUID");
    CHECK(d, "uuid");
    if (d->mig_parent >= 0)
        snprintf(uuid, length, "MIG-00000000-0000-0000-%04d-%012u", d->mig_parent, d->mig_slot);
    else
        snprintf(uuid, length, "GPU-00000000-0000-0000-0000-%012u", d->index);
    return SUCCESS;
}

typedef struct pci_info {
    char bus_id_legacy[16];
    unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
    char bus_id[32];
} pci_info;

int nvmlDeviceGetPciInfo_v3(device *d, pci_info *pci) {
    count("nvmlDeviceGetPciInfo_v3");
    CHECK(d, "pci");
    memset(pci, 0, sizeof *pci);
    pci->bus = 0x10 + d->index;
    pci->pci_device_id = 0x20B010DE;
    snprintf(pci->bus_id, sizeof pci->bus_id, "00000000:%02X:00.0", pci->bus);
    snprintf(pci->bus_id_legacy, sizeof pci->bus_id_legacy, "0000:%02X:00.0", pci->bus);
    return SUCCESS;
}

/* ---- per-tick fields */
typedef struct utilization { unsigned gpu, memory; } utilization;

int nvmlDeviceGetUtilizationRates(device *d, utilization *u) {
    count("nvmlDeviceGetUtilizationRates");
    CHECK(d, "utilization");
    u->gpu = 10 + d->index;
    u->memory = 5 + d->index;
    return SUCCESS;
}

typedef struct memory { unsigned long long total, free, used; } memory;
typedef struct memory_v2 { unsigned version; unsigned long long total, reserved, free, used; } memory_v2;

/* What processes allocated (nvidia-smi's memory.used) and the device's size. */
static void allocated(const device *d, unsigned long long *total, unsigned long long *used) {
    *total = d->mig_parent >= 0 ? 10 * GIB : 40 * GIB;
    *used = (d->mig_parent >= 0 ? d->mig_slot + 1 : d->index + 1) * GIB;
}

/* v1: "used" also counts the driver's reserved memory, as real drivers do. */
int nvmlDeviceGetMemoryInfo(device *d, memory *m) {
    count("nvmlDeviceGetMemoryInfo");
    CHECK(d, "memory");
    allocated(d, &m->total, &m->used);
    m->used += RESERVED;
    m->free = m->total - m->used;
    return SUCCESS;
}

#ifndef STUB_NO_MEMORY_V2
int nvmlDeviceGetMemoryInfo_v2(device *d, memory_v2 *m) {
    count("nvmlDeviceGetMemoryInfo_v2");
    CHECK(d, "memory");
    if (m->version != MEMORY_V2 || listed(unsupported, "memoryv2version")) return ERR_ARGUMENT_VERSION_MISMATCH;
    allocated(d, &m->total, &m->used);
    m->reserved = RESERVED;
    m->free = m->total - m->reserved - m->used;
    return SUCCESS;
}
#endif

int nvmlDeviceGetTemperature(device *d, int sensor, unsigned *t) {
    count("nvmlDeviceGetTemperature");
    CHECK(d, "temperature");
    if (sensor != 0) return ERR_INVALID_ARGUMENT;
    *t = 40 + d->index;
    return SUCCESS;
}

int nvmlDeviceGetPowerUsage(device *d, unsigned *mw) {
    count("nvmlDeviceGetPowerUsage");
    CHECK(d, "power");
    *mw = 100000 + 1000 * d->index;
    return SUCCESS;
}

int nvmlDeviceGetEnforcedPowerLimit(device *d, unsigned *mw) {
    count("nvmlDeviceGetEnforcedPowerLimit");
    CHECK(d, "powerlimit");
    *mw = 400000;
    return SUCCESS;
}

int nvmlDeviceGetTotalEnergyConsumption(device *d, unsigned long long *mj) {
    count("nvmlDeviceGetTotalEnergyConsumption");
    CHECK(d, "energy");
    energy_tick++;
    *mj = 5000000ULL + 1000ULL * d->index + 10ULL * energy_tick; /* cumulative: only grows */
    return SUCCESS;
}

int nvmlDeviceGetFanSpeed(device *d, unsigned *percent) {
    count("nvmlDeviceGetFanSpeed");
    CHECK(d, "fan");
    *percent = 30 + d->index;
    return SUCCESS;
}

int nvmlDeviceGetClockInfo(device *d, int type, unsigned *mhz) {
    count("nvmlDeviceGetClockInfo");
    CHECK(d, "clocks");
    if (type == 1) *mhz = 1410;       /* NVML_CLOCK_SM */
    else if (type == 2) *mhz = 1215;  /* NVML_CLOCK_MEM */
    else return ERR_INVALID_ARGUMENT;
    return SUCCESS;
}

static int codec(device *d, const char *field, unsigned base, unsigned *util, unsigned *period) {
    CHECK(d, field);
    *util = base + d->index;
    *period = 167000;
    return SUCCESS;
}

int nvmlDeviceGetEncoderUtilization(device *d, unsigned *util, unsigned *period) {
    count("nvmlDeviceGetEncoderUtilization");
    return codec(d, "encoder", 1, util, period);
}

int nvmlDeviceGetDecoderUtilization(device *d, unsigned *util, unsigned *period) {
    count("nvmlDeviceGetDecoderUtilization");
    return codec(d, "decoder", 2, util, period);
}

int nvmlDeviceGetPcieThroughput(device *d, int counter, unsigned *kbps) {
    count("nvmlDeviceGetPcieThroughput");
    CHECK(d, "pcie");
    if (counter == 0) *kbps = 1000 * (d->index + 1);       /* TX */
    else if (counter == 1) *kbps = 2000 * (d->index + 1);  /* RX */
    else return ERR_INVALID_ARGUMENT;
    return SUCCESS;
}

int nvmlDeviceGetTotalEccErrors(device *d, int error_type, int counter_type, unsigned long long *n) {
    count("nvmlDeviceGetTotalEccErrors");
    CHECK(d, "ecc");
    if (counter_type != 0) return ERR_INVALID_ARGUMENT; /* only volatile counters here */
    *n = error_type == 0 ? d->index : 0;               /* corrected = index, uncorrected = 0 */
    return SUCCESS;
}

static int clock_reasons(device *d, unsigned long long *reasons) {
    CHECK(d, "throttle");
    *reasons = d->index == 0 ? (0x4ULL | 0x20ULL) : 0x1ULL; /* SwPowerCap|SwThermal, else idle */
    return SUCCESS;
}

/* "eventreasons" in NVML_STUB_UNSUPPORTED plays a driver older than 535, without the new name */
int nvmlDeviceGetCurrentClocksEventReasons(device *d, unsigned long long *reasons) {
    count("nvmlDeviceGetCurrentClocksEventReasons");
    if (listed(unsupported, "eventreasons")) return 13; /* NVML_ERROR_FUNCTION_NOT_FOUND */
    return clock_reasons(d, reasons);
}

int nvmlDeviceGetCurrentClocksThrottleReasons(device *d, unsigned long long *reasons) {
    count("nvmlDeviceGetCurrentClocksThrottleReasons");
    return clock_reasons(d, reasons);
}

int nvmlDeviceGetPerformanceState(device *d, int *pstate) {
    count("nvmlDeviceGetPerformanceState");
    CHECK(d, "pstate");
    *pstate = d->index == 0 ? 0 : 8;
    return SUCCESS;
}

/* ---- processes */
typedef struct process_info {
    unsigned pid;
    unsigned long long used;
    unsigned gpu_instance_id, compute_instance_id;
} process_info;

static int processes(device *d, const char *field, unsigned base_pid, unsigned *n, process_info *out) {
    CHECK(d, "processes");
    (void)field;
    unsigned have = d->index == 0 ? 2 : 0;
    if (have == 0) { *n = 0; return SUCCESS; }
    if (out == NULL || *n < have) { *n = have; return ERR_INSUFFICIENT_SIZE; }
    out[0] = (process_info){base_pid, 1 * GIB, 0xFFFFFFFF, 0xFFFFFFFF};
    out[1] = (process_info){base_pid + 1, 0xFFFFFFFFFFFFFFFFULL, 0xFFFFFFFF, 0xFFFFFFFF};
    *n = have;
    return SUCCESS;
}

int nvmlDeviceGetComputeRunningProcesses_v3(device *d, unsigned *n, process_info *out) {
    count("nvmlDeviceGetComputeRunningProcesses_v3");
    return processes(d, "processes", 4242, n, out);
}

int nvmlDeviceGetGraphicsRunningProcesses_v3(device *d, unsigned *n, process_info *out) {
    count("nvmlDeviceGetGraphicsRunningProcesses_v3");
    /* graphics pid 4243 is also the second compute process: it must be listed once */
    return processes(d, "processes", 4243, n, out);
}

int nvmlSystemGetProcessName(unsigned pid, char *name, unsigned length) {
    count("nvmlSystemGetProcessName");
    if (!initialised) return ERR_UNINITIALIZED;
    int reused = rename_flag && access(rename_flag, F_OK) == 0;
    snprintf(name, length, reused ? "stub-reused-%u" : "stub-worker-%u", pid);
    return SUCCESS;
}

typedef struct process_util {
    unsigned pid;
    unsigned long long stamp;
    unsigned sm, mem, enc, dec;
} process_util;

int nvmlDeviceGetProcessUtilization(device *d, process_util *out, unsigned *n, unsigned long long last_seen) {
    count("nvmlDeviceGetProcessUtilization");
    CHECK(d, "processutil");
    unsigned have = 0;
    for (unsigned i = 0; i < util_count; i++)
        if (util_samples[i].gpu == d->index && util_samples[i].stamp > last_seen) have++;
    if (have == 0) return ERR_NOT_FOUND;
    if (out == NULL || *n < have) { *n = have; return ERR_INSUFFICIENT_SIZE; }
    unsigned k = 0;
    for (unsigned i = 0; i < util_count; i++) {
        const util_entry *e = &util_samples[i];
        if (e->gpu == d->index && e->stamp > last_seen) out[k++] = (process_util){e->pid, e->stamp, e->sm, e->mem, 0, 0};
    }
    *n = have;
    return SUCCESS;
}

/* ---- MIG */
int nvmlDeviceGetMigMode(device *d, unsigned *current, unsigned *pending) {
    count("nvmlDeviceGetMigMode");
    CHECK(d, "mig");
    *current = *pending = (unsigned)mig_enabled(d->index);
    return SUCCESS;
}

int nvmlDeviceGetMaxMigDeviceCount(device *d, unsigned *n) {
    count("nvmlDeviceGetMaxMigDeviceCount");
    CHECK(d, "mig");
    *n = mig_enabled(d->index) ? MIG_SLOTS : 0;
    return SUCCESS;
}

int nvmlDeviceGetMigDeviceHandleByIndex(device *d, unsigned index, device **mig) {
    count("nvmlDeviceGetMigDeviceHandleByIndex");
    CHECK(d, "mig");
    if (!mig_enabled(d->index) || index >= MIG_SLOTS) return ERR_INVALID_ARGUMENT;
    if (index >= 2) return ERR_NOT_FOUND; /* two instances created out of seven slots */
    *mig = &migs[d->index][index];
    return SUCCESS;
}

int nvmlDeviceGetGpuInstanceId(device *d, unsigned *id) {
    count("nvmlDeviceGetGpuInstanceId");
    CHECK(d, NULL);
    if (d->mig_parent < 0) return ERR_INVALID_ARGUMENT;
    *id = 1 + d->mig_slot;
    return SUCCESS;
}

int nvmlDeviceGetComputeInstanceId(device *d, unsigned *id) {
    count("nvmlDeviceGetComputeInstanceId");
    CHECK(d, NULL);
    if (d->mig_parent < 0) return ERR_INVALID_ARGUMENT;
    *id = 0;
    return SUCCESS;
}

/* ---- GPM (Hopper and newer profiling metrics) */
typedef struct gpm_support { unsigned version, supported; } gpm_support;
typedef struct gpm_sample { unsigned long long serial; } gpm_sample;
typedef struct metric_info { const char *short_name, *long_name, *unit; } metric_info;
typedef struct gpm_metric {
    unsigned id;
    int ret;
    double value;
    metric_info info;
} gpm_metric;
typedef struct gpm_metrics_get {
    unsigned version, count;
    gpm_sample *sample1, *sample2;
    gpm_metric metrics[477];
} gpm_metrics_get;

static unsigned long long gpm_serial = 0;

int nvmlGpmQueryDeviceSupport(device *d, gpm_support *s) {
    count("nvmlGpmQueryDeviceSupport");
    CHECK(d, NULL);
    s->supported = (unsigned)gpm;
    return SUCCESS;
}

int nvmlGpmSampleAlloc(gpm_sample **sample) {
    count("nvmlGpmSampleAlloc");
    *sample = calloc(1, sizeof **sample);
    return *sample ? SUCCESS : ERR_INSUFFICIENT_SIZE;
}

int nvmlGpmSampleFree(gpm_sample *sample) {
    free(sample);
    return SUCCESS;
}

int nvmlGpmSampleGet(device *d, gpm_sample *sample) {
    count("nvmlGpmSampleGet");
    CHECK(d, "gpm");
    if (!gpm) return ERR_NOT_SUPPORTED;
    sample->serial = ++gpm_serial;
    return SUCCESS;
}

int nvmlGpmMetricsGet(gpm_metrics_get *get) {
    count("nvmlGpmMetricsGet");
    if (!initialised) return ERR_UNINITIALIZED;
    if (get->version != 1 || !get->sample1 || !get->sample2) return ERR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < get->count; i++) {
        gpm_metric *m = &get->metrics[i];
        m->ret = SUCCESS;
        switch (m->id) {
        case 2: m->value = 61.5; break;    /* SM_UTIL % */
        case 3: m->value = 33.25; break;   /* SM_OCCUPANCY % */
        case 5: m->value = 12.5; break;    /* ANY_TENSOR_UTIL % */
        case 10: m->value = 40.0; break;   /* DRAM_BW_UTIL % */
        case 20: m->value = 2.0; break;    /* PCIE_TX_PER_SEC MiB/s */
        case 21: m->value = 4.0; break;    /* PCIE_RX_PER_SEC MiB/s */
        case 60: m->value = 8.0; break;    /* NVLINK_TOTAL_RX_PER_SEC MiB/s */
        case 61: m->value = 16.0; break;   /* NVLINK_TOTAL_TX_PER_SEC MiB/s */
        default: m->ret = ERR_NOT_SUPPORTED; m->value = 0.0;
        }
    }
    return SUCCESS;
}

/* ---- NVLink through field values (nvml.h: nvmlFieldValue_t, NVML_FI_DEV_NVLINK_*), scenarios read per call:
 *   NVML_STUB_NVLINK             links per GPU (unset: NVML_FI_DEV_NVLINK_LINK_COUNT answers NOT_SUPPORTED)
 *   NVML_STUB_NVLINK_DOWN        "gpu:link,..." links that are inactive (their counters do not move)
 *   NVML_STUB_FIELDS_FAIL_FLAG   while this file exists the whole call answers NVML_ERROR_UNKNOWN
 *   NVML_STUB_FIELDS_FAIL_GPUS   comma list of GPU indices: the fail flag fails only their calls (unset: all)
 *   NVML_STUB_UNSUPPORTED        also: nvlinkerrors (error counters), nvlinkstatus (state and speed),
 *                                nvlinkrx (the rx data counters)
 *   NVML_STUB_NVLINK_BASE        KiB every data counter starts from (unset: 1,000,000 tx and 2,000,000 rx
 *                                x (gpu + 1)); changing it mid-run makes counters dip or jump, 64-bit wrapping
 * Data counters grow by 100 KiB (tx) and 200 KiB (rx) times (link + 1) per call that asks for them. */
#define ERR_UNKNOWN 999
#define FI_LINK_COUNT 91
#define FI_DATA_TX 138
#define FI_DATA_RX 139
#define FI_GET_SPEED 164
#define FI_GET_STATE 165
#define VALUE_UINT 1
#define VALUE_ULL 3
#define ALL_LINKS 0xFFFFFFFFU

typedef union field_value_u {
    double d; unsigned ui; unsigned long ul; unsigned long long ull; long long sll; int si; unsigned short us;
} field_value_u;

typedef struct field_value { /* nvmlFieldValue_t */
    unsigned field_id, scope_id;
    long long timestamp, latency_us;
    int value_type; /* nvmlValueType_t */
    int ret;        /* nvmlReturn_t */
    field_value_u value;
} field_value;

static unsigned long long nvlink_reads[MAX_GPUS];

static int nvlink_links(void) {
    const char *n = getenv("NVML_STUB_NVLINK");
    return n ? atoi(n) : -1;
}

static int nvlink_down(unsigned gpu, unsigned link) {
    char item[32];
    const char *down = getenv("NVML_STUB_NVLINK_DOWN");
    snprintf(item, sizeof item, "%u:%u", gpu, link);
    return down && listed(down, item);
}

/* The legacy per-link error ids: 32-37/96-101 CRC flit, 39-44/102-107 CRC data, 46-51/108-113 replay,
 * 53-58/114-119 recovery, for links 0-5 and 6-11; and the scoped ones of newer drivers, for any link
 * (link in scopeId): 161 NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY, 162 _RECOVERY, 163 _CRC (flit).
 * Returns the counter kind 0-3 and sets *link, or -1. */
static int error_field(unsigned id, unsigned *link) {
    if (id == 161) return 2;
    if (id == 162) return 3;
    if (id == 163) return 0;
    for (int kind = 0; kind < 4; kind++) {
        unsigned low = 32 + 7 * (unsigned)kind, high = 96 + 6 * (unsigned)kind;
        if (id >= low && id < low + 6) { *link = id - low; return kind; }
        if (id >= high && id < high + 6) { *link = id - high + 6; return kind; }
    }
    return -1;
}

static unsigned long long data_kib(unsigned gpu, unsigned link, int rx) {
    unsigned long long reads = nvlink_down(gpu, link) ? 0 : nvlink_reads[gpu];
    const char *base = getenv("NVML_STUB_NVLINK_BASE");
    unsigned long long start = base ? strtoull(base, NULL, 10) : (rx ? 2000000ULL : 1000000ULL) * (gpu + 1);
    return start + reads * (rx ? 200ULL : 100ULL) * (link + 1);
}

static void answer(field_value *v, unsigned gpu, int links) {
    unsigned link = v->scope_id;
    v->timestamp = 1700000000000000LL + (long long)nvlink_reads[gpu];
    v->latency_us = 5;
    v->value.ull = 0;
    v->value_type = VALUE_ULL;
    v->ret = SUCCESS;
    if (links < 0) { v->ret = ERR_NOT_SUPPORTED; return; }
    if (v->field_id == FI_LINK_COUNT) { v->value_type = VALUE_UINT; v->value.ui = (unsigned)links; return; }
    if (v->field_id == FI_DATA_TX || v->field_id == FI_DATA_RX) {
        int rx = v->field_id == FI_DATA_RX;
        if (rx && listed(unsupported, "nvlinkrx")) {
            v->ret = ERR_NOT_SUPPORTED;
        } else if (link == ALL_LINKS) {
            for (unsigned l = 0; l < (unsigned)links; l++) v->value.ull += data_kib(gpu, l, rx);
        } else if (link < (unsigned)links) {
            v->value.ull = data_kib(gpu, link, rx);
        } else {
            v->ret = ERR_INVALID_ARGUMENT;
        }
        return;
    }
    if (v->field_id == FI_GET_STATE || v->field_id == FI_GET_SPEED) {
        if (listed(unsupported, "nvlinkstatus")) { v->ret = ERR_NOT_SUPPORTED; return; }
        if (link >= (unsigned)links) { v->ret = ERR_INVALID_ARGUMENT; return; }
        v->value_type = VALUE_UINT;
        v->value.ui = v->field_id == FI_GET_SPEED ? 26562 : (nvlink_down(gpu, link) ? 0 : 1);
        return;
    }
    int kind = error_field(v->field_id, &link);
    if (kind >= 0) count("nvlinkErrorEntry"); /* test-only: how often error counters were asked for */
    if (kind < 0 || listed(unsupported, "nvlinkerrors")) { v->ret = ERR_NOT_SUPPORTED; return; }
    if (link >= (unsigned)links) { v->ret = ERR_INVALID_ARGUMENT; return; }
    v->value.ull = 1000ULL * gpu + 100ULL * (unsigned)kind + link;
}

/* nvmlDeviceGetNvLinkErrorCounter: the same counts as the field values (nvmlNvLinkErrorCounter_t: 0 replay,
 * 1 recovery, 2 CRC flit, 3 CRC data), for any link, as the per-link call answers on every generation. */
int nvmlDeviceGetNvLinkErrorCounter(device *d, unsigned link, int counter, unsigned long long *value) {
    static const int kind_of[4] = {2, 3, 0, 1};
    CHECK(d, "nvlinkerrors");
    int links = nvlink_links();
    if (links < 0) return ERR_NOT_SUPPORTED;
    if (value == NULL || counter < 0 || counter > 3 || link >= (unsigned)links) return ERR_INVALID_ARGUMENT;
    unsigned gpu = d->mig_parent >= 0 ? (unsigned)d->mig_parent : d->index;
    *value = 1000ULL * gpu + 100ULL * (unsigned)kind_of[counter] + link;
    return SUCCESS;
}

int nvmlDeviceGetFieldValues(device *d, int n, field_value *values) {
    count("nvmlDeviceGetFieldValues");
    CHECK(d, NULL);
    if (n < 0 || (n > 0 && values == NULL)) return ERR_INVALID_ARGUMENT;
    unsigned gpu = d->mig_parent >= 0 ? (unsigned)d->mig_parent : d->index;
    const char *fail = getenv("NVML_STUB_FIELDS_FAIL_FLAG"), *failing = getenv("NVML_STUB_FIELDS_FAIL_GPUS");
    char item[16];
    snprintf(item, sizeof item, "%u", gpu);
    if (fail && access(fail, F_OK) == 0 && (!failing || listed(failing, item))) return ERR_UNKNOWN;
    int links = nvlink_links(), moved = 0;
    for (int i = 0; i < n; i++) {
        if (values[i].field_id == FI_DATA_TX || values[i].field_id == FI_DATA_RX) moved = 1;
    }
    if (moved) nvlink_reads[gpu]++;
    for (int i = 0; i < n; i++) answer(&values[i], gpu, links);
    return SUCCESS;
}
