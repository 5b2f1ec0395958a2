-- Argo CD health of a CloudPhoneAccount (cloudphone.io/v1alpha1), read from the status the operator writes.
local hs = {}
local status = obj.status or {}
local ready = nil
for _, c in ipairs(status.conditions or {}) do
  if c.type == "Ready" then
    ready = c
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator's first status (it writes one after a tick with the account's phones)"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "the operator has not yet observed generation " .. tostring(generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = tostring(status.phones or 0) .. " phones"
  return hs
end
hs.status = "Degraded"
hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
return hs
