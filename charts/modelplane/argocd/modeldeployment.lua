-- Health of a ModelDeployment (serving.modelplane.io/v1alpha1).
local hs = waiting_health(obj)
  or when(condition(obj, "Degraded"), "True", "Degraded", "Degraded")
  or when(condition(obj, "QuotaAdmitted"), "False", "Degraded", "QuotaAdmitted is False")
  or when(condition(obj, "Progressing"), "True", "Progressing", "Rolling out")
  or when(condition(obj, "Ready"), "True", "Healthy", "Ready")
if hs ~= nil then
  return hs
end
local ready = condition(obj, "Ready")
if ready ~= nil and ready.reason == "ScaledToZero" then
  return { status = "Suspended", message = say(ready, "Scaled to zero") }
end
return { status = "Progressing", message = say(ready, "Waiting for ready replicas") }
