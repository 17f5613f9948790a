-- Health of a TenantQuota (serving.modelplane.io/v1alpha1).
local hs = waiting_health(obj)
if hs ~= nil then
  return hs
end
local ready = condition(obj, "Ready")
if ready == nil or ready.status ~= "True" then
  return { status = "Degraded", message = say(ready, "The quota is not in force") }
end
return when(condition(obj, "Exceeded"), "True", "Degraded", "Exceeded")
  or { status = "Healthy", message = say(ready, "Enforced") }
