"""Stand-in for DCGM's dcgm_agent.py: dcgmGetGpuInstanceHierarchy, as the host engine would answer it.

FAKE_DCGM_MIG lists GPU instances as "gpuIndex:instanceId:entityId,..."; each gets one compute
instance entity too (entity id + 100), as a real hierarchy lists GPU_CI entries after their GPU_I.
While the file named by FAKE_DCGM_MIG_FLAG exists the list is read from FAKE_DCGM_MIG_LATER instead
(instances created or destroyed while the service runs).
"""

import os

import dcgm_fields
import dcgm_structs


def _spec():
    flag = os.environ.get("FAKE_DCGM_MIG_FLAG")
    if flag and os.path.exists(flag):
        return os.environ.get("FAKE_DCGM_MIG_LATER", "")
    return os.environ.get("FAKE_DCGM_MIG", "")


def dcgmGetGpuInstanceHierarchy(dcgm_handle):
    if dcgm_handle is None:
        raise dcgm_structs.DCGMError("connection not valid")
    hierarchy = dcgm_structs.c_dcgmMigHierarchy_v2()
    hierarchy.version = dcgm_structs.c_dcgmMigHierarchy_version2
    entries = [tuple(int(x) for x in item.split(":")) for item in _spec().split(",") if item]
    for gpu, instance, entity in entries:
        for group, eid, parent in ((dcgm_fields.DCGM_FE_GPU_I, entity, (dcgm_fields.DCGM_FE_GPU, gpu)),
                                   (dcgm_fields.DCGM_FE_GPU_CI, entity + 100, (dcgm_fields.DCGM_FE_GPU_I, entity))):
            item = hierarchy.entityList[hierarchy.count]
            item.entity.entityGroupId, item.entity.entityId = group, eid
            item.parent.entityGroupId, item.parent.entityId = parent
            item.info.gpuUuid = f"GPU-00000000-0000-0000-0000-{gpu:012d}".encode()
            item.info.nvmlGpuIndex, item.info.nvmlInstanceId = gpu, instance
            item.info.nvmlComputeInstanceId = 0 if group == dcgm_fields.DCGM_FE_GPU_CI else 0xFFFFFFFF
            hierarchy.count += 1
    return hierarchy
