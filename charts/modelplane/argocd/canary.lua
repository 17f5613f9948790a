-- Health of a Canary (serving.modelplane.io/v1alpha1).
local waiting = waiting_health(obj)
if waiting ~= nil then
  return waiting
end
local hs = {}
local phase = obj.status.phase or "Pending"
local progressing = condition(obj, "Progressing")
local reason = progressing and progressing.reason or ""
local message = say(progressing, phase)
-- Held by something a person must change: the target, the quota, the spec, a signature.
local blocked = {
  TargetNotFound = true, CandidateNotApplicable = true, QuotaNotAdmitted = true,
  CandidateNotSplittable = true, InvalidSpec = true, VerificationFailed = true,
}
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "RolledBack" and reason == "Aborted" then
  hs.status = "Suspended"
elseif phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Paused" then
  hs.status = "Suspended"
elseif blocked[reason] then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = phase .. " (weight " .. tostring(obj.status.weight or 0) .. "%): " .. message
return hs
