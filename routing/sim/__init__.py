"""A discrete-event fleet simulator that drives the production balancer.

The balancer, policies, estimators and health code are the ones the gateway
runs; only the network, the workers and the clock are simulated.
"""
