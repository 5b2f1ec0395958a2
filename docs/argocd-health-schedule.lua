-- Argo CD health of a CloudPhoneSchedule (cloudphone.io/v1alpha1), read from the status the operator writes.
local hs = {}
local status = obj.status
local conditions = {}
for _, c in ipairs((status and status.conditions) or {}) do
  conditions[c.type] = c
end
if status == nil or conditions.Valid == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator's first status"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "the operator has not yet observed generation " .. tostring(generation)
  return hs
end
-- An unknown zone, overlapping exceptions: the schedule's phones are held as they are until a person
-- fixes the spec.
if conditions.Valid.status == "False" then
  hs.status = "Degraded"
  hs.message = (conditions.Valid.reason or "") .. ": " .. (conditions.Valid.message or "")
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: its phones are kept as they are"
  return hs
end
-- Degraded, not Progressing: PrewarmAtRisk is computed from the number of calls the wake needs and
-- the account's pace, not from the wave's progress, so it does not clear by itself; it stays until a
-- person raises the account's limits or spec.prewarmLead (docs/runbook.md, CloudPhoneWaveLate).
local risk = conditions.PrewarmAtRisk
if risk ~= nil and risk.status == "True" then
  hs.status = "Degraded"
  hs.message = (risk.reason or "") .. ": " .. (risk.message or "")
  return hs
end
local counts = status.counts or {}
hs.status = "Healthy"
hs.message = (status.currentWindow or "") .. ": " .. tostring(counts.loaded or 0) .. " loaded, "
  .. tostring(counts.parked or 0) .. " parked, " .. tostring(counts.preparing or 0) .. " preparing, "
  .. tostring(counts.failed or 0) .. " failed"
if status.nextTransition ~= nil then
  hs.message = hs.message .. "; next: " .. tostring(status.nextTransition.lifecycle) .. " at "
    .. tostring(status.nextTransition.at)
end
return hs
