# Unit tests of authz.rego: `warden policy test` runs every test_ rule.
package warden.authz_test

import rego.v1

import data.warden.authz

cap(tier) := {"name": "tool", "tier": tier}

capped(tier, limit) := {"name": "payments.send", "tier": tier, "amount_limit": limit}

decide(capability, args, trust) := d if {
	d := authz.decision with input as {
		"capability": capability,
		"args": args,
		"session": {"id": "s_1", "trust": trust},
		"turn": {"id": "t_1"},
	}
}

test_tier_0_allows if {
	d := decide(cap(0), {}, "normal")
	d.decision == "allow"
	d.tier == 0
	d.reasons == ["tool is tier 0"]
}

test_tier_1_allows if {
	decide(cap(1), {}, "normal") == {"decision": "allow", "tier": 1, "reasons": ["tool is tier 1"]}
}

test_tier_2_asks_for_confirmation if {
	decide(cap(2), {}, "normal").decision == "confirm"
}

test_tier_3_denies if {
	decide(cap(3), {}, "normal").decision == "deny"
}

test_amount_over_the_limit_escalates if {
	d := decide(capped(1, 500), {"amount": 501}, "normal")
	d.tier == 2
	d.decision == "confirm"
	d.reasons == ["payments.send is tier 1", "amount 501 exceeds limit 500: +1"]
}

test_amount_at_the_limit_does_not_escalate if {
	decide(capped(1, 500), {"amount": 500}, "normal").tier == 1
}

test_amount_under_the_limit_does_not_escalate if {
	decide(capped(1, 500), {"amount": 499}, "normal").tier == 1
}

test_float_amount_just_over_escalates if {
	decide(capped(1, 500), {"amount": 500.5}, "normal").tier == 2
}

test_negative_amount_does_not_escalate if {
	decide(capped(1, 500), {"amount": -1000}, "normal").tier == 1
}

test_huge_amount_escalates if {
	decide(capped(0, 500), {"amount": 1e308}, "normal").tier == 1
}

test_huge_and_tiny_numbers_are_described_not_printed if {
	decide(capped(0, 500), {"amount": 1e308}, "normal").reasons == [
		"payments.send is tier 0",
		"amount beyond ±1e15 exceeds limit 500: +1",
	]
	decide(capped(0, 0.00001), {"amount": 0.5}, "normal").reasons == [
		"payments.send is tier 0",
		"amount 0.5 exceeds limit within ±0.0001: +1",
	]
	decide(capped(0, 0), {"amount": 2.25}, "normal").reasons == [
		"payments.send is tier 0",
		"amount 2.25 exceeds limit 0: +1",
	]
	decide(capped(0, -1e20), {"amount": -1e3}, "normal").reasons == [
		"payments.send is tier 0",
		"amount -1000 exceeds limit beyond ±1e15: +1",
	]
}

test_amount_not_a_number_does_not_escalate if {
	decide(capped(1, 500), {"amount": "lots"}, "normal").tier == 1
	decide(capped(1, 500), {"amount": true}, "normal").tier == 1
	decide(capped(1, 500), {"amount": [600]}, "normal").tier == 1
	decide(capped(1, 500), {"amount": null}, "normal").tier == 1
}

test_no_limit_means_no_amount_rule if {
	decide(cap(1), {"amount": 1e308}, "normal").tier == 1
}

test_low_trust_at_tier_0_does_not_escalate if {
	decide(cap(0), {}, "low") == {"decision": "allow", "tier": 0, "reasons": ["tool is tier 0"]}
}

test_low_trust_at_tier_1_escalates if {
	d := decide(cap(1), {}, "low")
	d.tier == 2
	d.decision == "confirm"
	d.reasons == ["tool is tier 1", "low-trust session: +1"]
}

test_both_rules_add_up if {
	decide(capped(1, 10), {"amount": 11}, "low").tier == 3
}

test_the_tier_is_capped_at_3 if {
	d := decide(capped(2, 10), {"amount": 11}, "low")
	d.tier == 3
	d.decision == "deny"
	d.reasons == [
		"payments.send is tier 2",
		"amount 11 exceeds limit 10: +1",
		"low-trust session: +1",
		"capped at tier 3",
	]
}

test_tier_3_over_the_limit_stays_3 if {
	decide(capped(3, 10), {"amount": 11}, "normal") == {
		"decision": "deny",
		"tier": 3,
		"reasons": ["payments.send is tier 3", "amount 11 exceeds limit 10: +1", "capped at tier 3"],
	}
}

test_unknown_fields_are_ignored if {
	d := authz.decision with input as {
		"capability": {"name": "tool", "tier": 1, "owner": "ops"},
		"args": {"to": "x@example.com", "amount_usd": 10000},
		"session": {"id": "s_1", "trust": "normal", "labels": ["a"]},
		"turn": {"id": "t_1"},
		"principal": {"name": "agent-7", "role": "agent"},
		"extra": 1,
	}
	d.tier == 1
}

test_missing_session_is_normal_trust if {
	d := authz.decision with input as {"capability": cap(1), "args": {}}
	d.tier == 1
}

test_a_tier_out_of_range_has_no_decision if {
	not authz.decision with input as {"capability": cap(4), "args": {}}
	not authz.decision with input as {"capability": cap("2"), "args": {}}
	not authz.decision with input as {"args": {}}
}
