-- Argo CD health of a CloudPhone (cloudphone.io/v1alpha1), read from the status the operator writes.
local hs = {}
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: the operator makes no vendor call for this phone"
  return hs
end
local status = obj.status or {}
local ready = nil
for _, c in ipairs(status.conditions or {}) do
  if c.type == "Ready" then
    ready = c
  end
end
if ready == nil then
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
local message = ready.message or ""
-- A Scheduled phone whose CloudPhoneSchedule is suspended is held as it is (Ready=True, nothing is
-- wrong): Suspended rather than Healthy, as the schedule itself shows, because a person paused it and
-- nothing will follow the schedule's windows until someone resumes it; Argo CD shows a Suspended
-- resource without calling the application Degraded.
if ready.reason == "ScheduleSuspended" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
-- A BackedUp phone in use, or idle for less than its spec.idleTimeout, is where it should be for now.
-- A Scheduled phone of a dry-run schedule (Ready=True, DryRun) is Healthy: nothing is called. One
-- waiting for its turn in a schedule's wave keeps the Ready condition it had (none yet: Pending,
-- Progressing).
if ready.status == "True" or ready.reason == "WaitingForIdle" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
-- kstatus's Stalled (a person must act) is Degraded, whatever the reason.
for _, c in ipairs(status.conditions or {}) do
  if c.type == "Stalled" and c.status == "True" then
    hs.status = "Degraded"
    hs.message = (c.reason or "") .. ": " .. (c.message or "")
    return hs
  end
end
local degraded_phases = { BackupFailed = true, RestoreFailed = true, NotFound = true }
local degraded_reasons = {
  BackupFailed = true,
  BackupRefused = true,
  PrepareFailed = true,
  PrepareRefused = true,
  RestoreFailed = true,
  InstanceNotFound = true,
  DuplicateInstance = true,
  InvalidSpec = true,
  UnknownStatus = true,
  AccountNotFound = true,
  AccountNotAllowed = true,
  AccountNotReady = true,
  -- The phone is held as it is, with no call, until a person creates its CloudPhoneSchedule (or
  -- installs its CRD) or fixes the schedule's spec.
  ScheduleNotFound = true,
  ScheduleInvalid = true,
}
if degraded_phases[status.phase] or degraded_reasons[ready.reason] then
  hs.status = "Degraded"
  hs.message = (ready.reason or "") .. ": " .. message
  return hs
end
hs.status = "Progressing"
hs.message = (ready.reason or "") .. ": " .. message
return hs
