"""The gateway's audit settings: what reaches the trust policy, and what is refused."""

from __future__ import annotations

import re

import pytest

from gateway.config import GatewayConfig
from routing.reputation import TrustPolicy
from routing.settings import ConfigError, load_settings


def test_how_many_flags_convict_comes_from_the_settings() -> None:
    assert GatewayConfig().trust_policy().convict_flags == TrustPolicy().convict_flags
    config = load_settings(GatewayConfig, section="gateway", toml={"gateway": {"audit_convict_flags": 5}})
    assert config.trust_policy().convict_flags == 5
    env = {"INFERCDN_GATEWAY_AUDIT_CONVICT_FLAGS": "2"}
    assert load_settings(GatewayConfig, section="gateway", env=env).trust_policy().convict_flags == 2


@pytest.mark.parametrize("flags", [0, 51])
def test_a_conviction_rule_outside_one_to_fifty_flags_is_refused(flags: int) -> None:
    with pytest.raises(ConfigError, match=re.escape("gateway.audit_convict_flags")):
        load_settings(GatewayConfig, section="gateway", toml={"gateway": {"audit_convict_flags": flags}})
