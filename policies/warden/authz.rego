# The 4-tier rules of contract.md, as Rego. warden evaluates
# data.warden.authz.decision for every action; the result must be
# {"decision": "allow"|"confirm"|"deny", "tier": 0..3, "reasons": [...]}.
# Anything else (undefined, an error, another shape) denies the action.
#
# Written to mean the same under OPA and regorus: see docs/policy.md.
package warden.authz

import rego.v1

# The highest tier: its actions never run.
max_tier := 3

# What each tier decides, by tier.
verdicts := ["allow", "allow", "confirm", "deny"]

# The capability's own tier; undefined (so no decision: deny) unless 0..3.
base_tier := t if {
	t := input.capability.tier
	t in {0, 1, 2, 3}
}

amount := input.args.amount

limit := input.capability.amount_limit

# +1: the amount is a number over the capability's amount limit.
over_limit if {
	is_number(amount)
	is_number(limit)
	amount > limit
}

# +1: a low-trust session asks for anything beyond observation.
low_trust if {
	input.session.trust == "low"
	base_tier >= 1
}

amount_step := 1 if over_limit

default amount_step := 0

trust_step := 1 if low_trust

default trust_step := 0

uncapped := (base_tier + amount_step) + trust_step

tier := min([uncapped, max_tier])

# A number as text. OPA writes numbers from 1e21 up, or below 1e-4, in
# exponent form and regorus does not, so those are described instead of
# printed: the reasons read the same under both (docs/policy.md).
show(x) := sprintf("%v", [x]) if x == 0

show(x) := sprintf("%v", [x]) if {
	abs(x) >= 0.0001
	abs(x) < 1e15
}

show(x) := "beyond ±1e15" if abs(x) >= 1e15

show(x) := "within ±0.0001" if {
	x != 0
	abs(x) < 0.0001
}

base_reason := sprintf("%s is tier %d", [input.capability.name, base_tier])

amount_reasons := [sprintf("amount %s exceeds limit %s: +1", [show(amount), show(limit)])] if over_limit

default amount_reasons := []

trust_reasons := ["low-trust session: +1"] if low_trust

default trust_reasons := []

cap_reasons := ["capped at tier 3"] if uncapped > max_tier

default cap_reasons := []

reasons := array.concat(array.concat([base_reason], amount_reasons), array.concat(trust_reasons, cap_reasons))

decision := {
	"decision": verdicts[tier],
	"tier": tier,
	"reasons": reasons,
}
