"""Stand-in for DCGM's DcgmReader.py, at the bindings' own import boundary, with the real call shapes.

Scenarios (environment, read at each call):
  FAKE_DCGM_DOWN       connecting fails, as with no nv-hostengine listening
  FAKE_DCGM_STOP_FLAG  while this file exists every read raises (the engine stopped answering)
  FAKE_DCGM_MIG_VALUES JSON {"entityId": {"fieldId": value}} for GPU instance entities; a value of
                       null is DCGM's blank (left out, as DcgmReader does with ignoreBlank=True)
Connections made are counted in the file FAKE_DCGM_CONNECTS, when set (one line per connection).
"""

import json
import os

import dcgm_fields
import dcgm_structs

BLANK = 140737488355328.0  # DCGM_FP64_BLANK
_GPU_VALUES = {1002: 0.5, 1003: 0.25, 1004: 0.125, 1005: BLANK, 1009: 1000, 1010: 2000, 1011: 3000, 1012: 4000}
_MIG_DEFAULT = {1001: 0.5, 1002: 0.25, 1005: 0.125}


class _Handle:
    def __init__(self, hostname):
        self.handle = hostname  # a real DcgmHandle holds the C handle here


class _Discovery:
    def GetAllSupportedGpuIds(self):
        return list(range(int(os.environ.get("NVML_STUB_GPUS", "1"))))


class _System:
    discovery = _Discovery()


class DcgmReader:
    def __init__(self, hostname="localhost", fieldIds=None, updateFrequency=10000000, maxKeepAge=3600.0,
                 ignoreList=None, fieldGroupName="dcgm_fieldgroupData", gpuIds=None, entities=None,
                 fieldIntervalMap=None, ignoreBlank=True):
        self.m_dcgmHostName = hostname
        self.m_fields = list(fieldIds or [])
        self.m_requestedGpuIds = gpuIds
        self.m_requestedEntities = entities
        self.m_dcgmHandle = None
        self.m_dcgmSystem = None

    def Reconnect(self):
        if self.m_dcgmHandle is not None:
            return
        if os.environ.get("FAKE_DCGM_DOWN"):
            raise dcgm_structs.DCGMError("Host engine connection invalid/disconnected")
        counter = os.environ.get("FAKE_DCGM_CONNECTS")
        if counter:
            with open(counter, "a") as out:
                out.write(f"{len(self.m_requestedEntities or [])}\n")
        self.m_dcgmHandle, self.m_dcgmSystem = _Handle(self.m_dcgmHostName), _System()

    def Shutdown(self):
        self.m_dcgmHandle = self.m_dcgmSystem = None

    def _check(self):
        self.Reconnect()
        flag = os.environ.get("FAKE_DCGM_STOP_FLAG")
        if flag and os.path.exists(flag):
            self.Shutdown()
            raise dcgm_structs.DCGMError("Host engine connection invalid/disconnected")

    def _gpu_values(self):
        return {f: _GPU_VALUES[f] for f in self.m_fields if f in _GPU_VALUES and _GPU_VALUES[f] != BLANK}

    def GetLatestGpuValuesAsFieldIdDict(self):
        self._check()
        gpus = self.m_requestedGpuIds if self.m_requestedGpuIds is not None else _Discovery().GetAllSupportedGpuIds()
        return {gpu: self._gpu_values() for gpu in gpus}

    def GetLatestEntityValuesAsFieldIdDict(self):
        self._check()
        table = {int(k): {int(f): v for f, v in fields.items()}
                 for k, fields in json.loads(os.environ.get("FAKE_DCGM_MIG_VALUES", "{}")).items()}
        result = {dcgm_fields.DCGM_FE_GPU: {gpu: self._gpu_values() for gpu in self.m_requestedGpuIds or []}}
        instances = {}
        for pair in self.m_requestedEntities or []:
            if pair.entityGroupId != dcgm_fields.DCGM_FE_GPU_I:
                continue
            values = table.get(pair.entityId, _MIG_DEFAULT)
            instances[pair.entityId] = {f: v for f, v in values.items() if f in self.m_fields and v is not None}
        result[dcgm_fields.DCGM_FE_GPU_I] = instances
        return result
