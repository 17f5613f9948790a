-- Shared by the health checks below; each check file starts with this text (the chart's
-- argocd-cm snippet and the tests put them together, Argo CD takes one script per kind).
local function condition(obj, type_)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

-- Progressing while the operator has not written a status for this generation.
local function unobserved(obj)
  local generation = obj.metadata and obj.metadata.generation
  if obj.status == nil then
    return "Waiting for modelplane-operator to report on this object"
  end
  local observed = obj.status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return "Waiting for modelplane-operator to observe generation " .. tostring(generation)
  end
  return nil
end

local function say(c, fallback)
  if c == nil then
    return fallback
  end
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason or fallback
end

-- The health for a status not written for this generation yet, else nil.
local function waiting_health(obj)
  local waiting = unobserved(obj)
  if waiting == nil then
    return nil
  end
  return { status = "Progressing", message = waiting }
end

-- `status` with the condition's reason and message when condition `c` has status `value`.
local function when(c, value, status, fallback)
  if c ~= nil and c.status == value then
    return { status = status, message = say(c, fallback) }
  end
  return nil
end
