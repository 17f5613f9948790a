-- Health of a ModelDeployment (serving.modelplane.io/v1alpha1).
local hs = {}
local waiting = unobserved(obj)
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end
local degraded = condition(obj, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = say(degraded, "Degraded")
  return hs
end
local quota = condition(obj, "QuotaAdmitted")
if quota ~= nil and quota.status == "False" then
  hs.status = "Degraded"
  hs.message = say(quota, "QuotaAdmitted is False")
  return hs
end
local progressing = condition(obj, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = say(progressing, "Rolling out")
  return hs
end
local ready = condition(obj, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = say(ready, "Ready")
  return hs
end
if ready ~= nil and ready.reason == "ScaledToZero" then
  hs.status = "Suspended"
  hs.message = say(ready, "Scaled to zero")
  return hs
end
hs.status = "Progressing"
hs.message = say(ready, "Waiting for ready replicas")
return hs
