-- Health of a TenantQuota (serving.modelplane.io/v1alpha1).
local hs = {}
local waiting = unobserved(obj)
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end
local ready = condition(obj, "Ready")
if ready == nil or ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = say(ready, "The quota is not in force")
  return hs
end
local exceeded = condition(obj, "Exceeded")
if exceeded ~= nil and exceeded.status == "True" then
  hs.status = "Degraded"
  hs.message = say(exceeded, "Exceeded")
  return hs
end
hs.status = "Healthy"
hs.message = say(ready, "Enforced")
return hs
