"""Installing and removing the patches (``behaviour/_core.py``)."""

from __future__ import annotations


def test_apply_is_idempotent_and_revert_restores_moto() -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.cloudformation import parsing
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.events.models import Rule

    from loginwatch_org.sandbox import behaviour

    assert not behaviour.is_applied()
    originals = (Rule.send_to_targets, LambdaFunction._invoke_lambda, parsing.resource_class_from_type)
    try:
        behaviour.apply(endpoint_url="http://127.0.0.1:1")
        patched = (Rule.send_to_targets, LambdaFunction._invoke_lambda, parsing.resource_class_from_type)
        behaviour.apply(endpoint_url="http://127.0.0.1:2")
        assert behaviour.is_applied()
        assert (
            Rule.send_to_targets,
            LambdaFunction._invoke_lambda,
            parsing.resource_class_from_type,
        ) == patched
        assert all(p is not o for p, o in zip(patched, originals, strict=True))
        added = parsing.resource_class_from_type("AWS::SNS::Subscription")
        assert added.__name__ == "SnsSubscriptionResource"
        assert hasattr(CloudFormationResponse, "describe_organizations_access")
    finally:
        behaviour.revert()
    assert not behaviour.is_applied()
    assert (
        Rule.send_to_targets,
        LambdaFunction._invoke_lambda,
        parsing.resource_class_from_type,
    ) == originals
    assert not hasattr(CloudFormationResponse, "describe_organizations_access")
