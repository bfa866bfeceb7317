"""SimpleNegotiation: trades, turn limit, parsing, privacy and the rule-based negotiator."""

import random

import pytest

import envs
from envs.negotiation import NegotiationState, RuleBasedNegotiator, SimpleNegotiation

TWO_RESOURCES = {"Wheat": 5, "Ore": 40}


def hand_built(holdings, values, resources=None, max_turns=10):
    """A match with the given holdings and private values (lists of two dicts), Player 0 to move."""
    game = SimpleNegotiation(resources=resources, max_turns=max_turns)
    game.state = NegotiationState(holdings, values, start_values=[0, 0])
    game.state.start_values = [game.inventory_value(p) for p in range(2)]
    return game


def default_hand_built():
    """Both players hold 10 of every default resource; Player 1 holds no Ore."""
    holdings = [dict.fromkeys(["Wheat", "Wood", "Sheep", "Brick", "Ore"], 10) for _ in range(2)]
    holdings[1]["Ore"] = 0
    values = [{"Wheat": 5, "Wood": 10, "Sheep": 15, "Brick": 25, "Ore": 40} for _ in range(2)]
    return hand_built(holdings, values)


def totals(game):
    return {r: sum(game.state.holdings[p][r] for p in range(2)) for r in game.resources}


def play_random(game, seed, check=None):
    """Random play to the end; ``check(game)`` runs after every step. Returns the actions."""
    rng = random.Random(seed)
    actions = []
    while not game.is_terminal():
        action = game.sample_action(rng)
        assert game.parse_action(action) == action
        game.step(action)
        actions.append(action)
        if check is not None:
            check(game)
    return actions


def test_registered_with_rollout_turn_limit():
    assert envs.spec("SimpleNegotiation-v1").max_turns == 10
    game = envs.make("SimpleNegotiation-v1")
    assert isinstance(game, SimpleNegotiation) and game.max_turns == 10


def test_reset_draws_quantities_and_values_from_the_seed():
    game = SimpleNegotiation(quantity_range=(3, 4))
    game.reset(seed=5)
    for p in range(2):
        assert all(3 <= game.state.holdings[p][r] <= 4 for r in game.resources)
        for resource, base in game.base_values.items():
            assert base - base // 5 <= game.state.values[p][resource] <= base + base // 5
    assert game.current_player() == 0 and game.legal_actions() is None
    assert game.returns() == (0.0, 0.0) and game.gain(0) == game.gain(1) == 0


@pytest.mark.parametrize("resources", [{"Wheat": 5}, {"Wheat": 5, "wheat": 3}, {"Iron ore": 9}])
def test_bad_resource_lists_are_refused(resources):
    with pytest.raises(ValueError):
        SimpleNegotiation(resources=resources)


@pytest.mark.parametrize("quantity_range, resources", [((5, 25), None), ((0, 2), TWO_RESOURCES)])
def test_random_play_conserves_resources_and_returns_are_zero_sum(quantity_range, resources):
    trades = 0
    for seed in range(150):
        game = SimpleNegotiation(resources=resources, quantity_range=quantity_range)
        game.reset(seed)
        start = totals(game)

        def conserved(g, start=start):
            assert totals(g) == start
            assert all(n >= 0 for p in range(2) for n in g.state.holdings[p].values())

        trades += play_random(game, seed, conserved).count("[Accept]")
        returns = game.returns()
        assert sum(returns) == 0 and set(returns) <= {-1.0, 0.0, 1.0}
        gain0, gain1 = game.gain(0), game.gain(1)
        assert returns[0] == (gain0 > gain1) - (gain0 < gain1)
    assert trades >= 30  # the conservation check really ran over executed trades


@pytest.mark.parametrize("max_turns", [1, 4, 10])
def test_game_ends_after_exactly_max_turns(max_turns):
    game = SimpleNegotiation(max_turns=max_turns)
    game.reset(3)
    assert len(play_random(game, seed=3)) == max_turns
    assert game.parse_action("[Deny]") is None
    with pytest.raises(ValueError):
        game.step("[Deny]")
    assert "The game is over." in game.observe(0)


def test_hand_built_trade_gives_exact_values_and_winner():
    game = hand_built(
        holdings=[{"Wheat": 10, "Ore": 1}, {"Wheat": 4, "Ore": 5}],
        values=[{"Wheat": 4, "Ore": 44}, {"Wheat": 6, "Ore": 36}],
        resources=TWO_RESOURCES,
        max_turns=2,
    )
    assert [game.inventory_value(p) for p in range(2)] == [84, 204]
    game.step("[Offer: 3 Wheat -> 1 Ore]")
    assert game.state.holdings == [{"Wheat": 10, "Ore": 1}, {"Wheat": 4, "Ore": 5}]
    assert not game.is_terminal() and game.current_player() == 1
    game.step("[Accept]")
    assert game.state.holdings == [{"Wheat": 7, "Ore": 2}, {"Wheat": 7, "Ore": 4}]
    assert [game.inventory_value(p) for p in range(2)] == [116, 186]
    assert [game.gain(p) for p in range(2)] == [32, -18]
    assert game.is_terminal() and game.returns() == (1.0, -1.0)


def test_equal_gains_draw_and_deny_clears_the_offer():
    game = default_hand_built()
    game.step("[Offer: 1 Wheat -> 1 Wood]")
    game.step("[Deny]")
    assert game.state.pending is None and game.parse_action("[Accept]") is None
    while not game.is_terminal():
        game.step("[Deny]")
    assert game.returns() == (0.0, 0.0)


def test_counter_offer_replaces_the_pending_offer():
    game = default_hand_built()
    game.step("[Offer: 1 Wheat -> 1 Wood]")
    game.step("[Offer: 2 Sheep -> 1 Brick]")
    assert game.state.pending.offerer == 1
    game.step("[Accept]")
    assert game.state.holdings[0]["Sheep"] == 12 and game.state.holdings[0]["Brick"] == 9
    assert game.state.holdings[0]["Wheat"] == 10 and game.state.holdings[0]["Wood"] == 10


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("[Offer: 2 wheat, 1 wood -> 3 sheep]", "[Offer: 2 Wheat, 1 Wood -> 3 Sheep]"),
        ("Offer: 2 Wheat -> 1 Ore", "[Offer: 2 Wheat -> 1 Ore]"),
        ("\\boxed{[Offer: 1 WOOD, 2 WHEAT -> 1 ore]}", "[Offer: 2 Wheat, 1 Wood -> 1 Ore]"),
        (
            "I think... \\boxed{offer 2 bricks and 1 sheep -> 5 wheat}.",
            "[Offer: 1 Sheep, 2 Brick -> 5 Wheat]",
        ),
        ("\\boxed{offer 2 bricks and 1 sheep -> 5 ores}.", "[Offer: 1 Sheep, 2 Brick -> 5 Ore]"),
        ("[Offer: 1 Wheat, 1 Wheat -> 1 Ore].", "[Offer: 2 Wheat -> 1 Ore]"),
        ("[deny]", "[Deny]"),
        ("deny.", "[Deny]"),
        ("\\boxed{Deny}", "[Deny]"),
        ("  DENY!  ", "[Deny]"),
    ],
)
def test_variants_parse_to_canonical(text, canonical):
    game = default_hand_built()
    assert game.parse_action(text) == canonical


def test_accept_variants_parse_when_an_offer_is_pending():
    game = default_hand_built()
    game.step("[Offer: 1 Wheat -> 2 Wood]")
    for text in ["[accept]", "accept", "Accept.", "\\boxed{[Accept]}", "[ACCEPT]!"]:
        assert game.parse_action(text) == "[Accept]"


@pytest.mark.parametrize(
    "text",
    [
        "[Offer: 2 Gold -> 1 Ore]",  # unknown resource
        "[Offer: 11 Wheat -> 1 Ore]",  # more than held
        "[Offer: 0 Wheat -> 1 Ore]",  # zero amount
        "[Offer: 1 Wheat -> 0 Ore]",  # zero amount requested
        "[Offer: -1 Wheat -> 1 Ore]",  # negative amount
        "[Offer: 2 Wheat, 1 Ore]",  # missing arrow
        "[Offer: 2 Wheat -> 1 Wheat]",  # same resource on both sides
        "[Offer: -> 1 Ore]",  # nothing given
        "[Offer: 2 Wheat -> ]",  # nothing asked for
        "[Offer: 2 Wheat -> 1 Ore -> 1 Wood]",  # two arrows
        "[Offer: two Wheat -> 1 Ore]",  # amount not a number
        "[Offer: 99999999999999999999999 Wheat -> 1 Ore]",
        "[Accept]",  # no pending offer
        "[Offer 2 Wheat]",
        "I offer wheat",
        "garbage",
        "",
        "[]",
        "1" * 5000,
    ],
)
def test_malformed_or_invalid_actions_are_rejected(text):
    game = default_hand_built()
    assert game.parse_action(text) is None
    with pytest.raises(ValueError):
        game.step(text)


@pytest.mark.parametrize("value", [None, 3, b"[Deny]", ["[Deny]"]])
def test_parse_action_never_raises_on_non_strings(value):
    game = default_hand_built()
    assert game.parse_action(value) is None
    with pytest.raises(ValueError):
        game.step(value)


def test_accept_needs_the_requested_resources():
    game = default_hand_built()
    game.step("[Offer: 1 Wheat -> 1 Ore]")  # Player 1 holds no Ore
    assert not game.can_accept() and game.parse_action("[Accept]") is None
    assert "You lack the resources to accept it." in game.observe(1)
    assert "[Accept]" not in game.observe(1).splitlines()[-2]
    with pytest.raises(ValueError):
        game.step("[Accept]")


def test_step_takes_only_canonical_text():
    game = default_hand_built()
    for text in ["deny", "[deny]", "\\boxed{[Deny]}", "[Offer: 2 wheat -> 1 ore]"]:
        with pytest.raises(ValueError):
            game.step(text)
    with pytest.raises(ValueError):
        SimpleNegotiation().step("[Deny]")  # before reset


def test_canonical_strings_round_trip():
    for seed in range(40):
        game = SimpleNegotiation()
        game.reset(seed)
        rng = random.Random(seed)
        while not game.is_terminal():
            for _ in range(5):
                action = game.sample_action(rng)
                assert game.parse_action(action) == action
                assert game.parse_action(f"\\boxed{{{action}}}") == action
            game.step(action)


def test_same_seed_gives_same_observations():
    def transcript(seed):
        game = SimpleNegotiation()
        game.reset(seed)
        rng, seen = random.Random(seed), []
        while not game.is_terminal():
            seen.append((game.observe(0), game.observe(1)))
            game.step(game.sample_action(rng))
        return seen + [(game.observe(0), game.observe(1), game.returns())]

    assert transcript(11) == transcript(11)
    assert transcript(11) != transcript(12)


def test_observation_shows_own_values_and_never_the_opponents():
    game = hand_built(
        holdings=[{"Wheat": 23, "Ore": 29}, {"Wheat": 58, "Ore": 61}],
        values=[{"Wheat": 311, "Ore": 523}, {"Wheat": 777, "Ore": 913}],
        resources=TWO_RESOURCES,
        max_turns=4,
    )
    secrets_of = [["311", "523", "Wheat 2", "Ore 2"], ["777", "913", "Wheat 5", "Ore 6"]]
    for action in ["[Offer: 1 Wheat -> 1 Ore]", "[Deny]", "[Offer: 1 Ore -> 1 Wheat]", "[Accept]"]:
        for player in range(2):
            text = game.observe(player)
            assert all(secret not in text for secret in secrets_of[1 - player])
            assert all(value in text for value in secrets_of[player][:2])  # own values shown
        game.step(action)
    assert game.is_terminal()
    assert "Wheat 24 x 311, Ore 28 x 523" in game.observe(0)
    assert "Wheat 57 x 777, Ore 62 x 913" in game.observe(1)
    assert not any(secret in game.observe(0) for secret in secrets_of[1])
    assert not any(secret in game.observe(1) for secret in secrets_of[0])


def test_observation_lists_history_pending_offer_turns_and_moves():
    game = default_hand_built()
    game.step("[Offer: 2 Wheat -> 1 Brick]")
    text = game.observe(1)
    assert "Player 0: [Offer: 2 Wheat -> 1 Brick]" in text
    assert "Pending offer to you: Player 0 gives 2 Wheat and wants 1 Brick." in text
    assert "Turns left in the game: 9." in text
    assert "[Offer: <amount> <Resource>, ... -> <amount> <Resource>, ...], [Accept], [Deny]" in text
    assert text.endswith("\\boxed{MOVE}.")
    assert "Waiting for Player 1 to move." in game.observe(0)


def test_rule_based_negotiator_accepts_only_gainful_offers():
    rule, rng = RuleBasedNegotiator(), random.Random(0)
    game = default_hand_built()
    game.step("[Offer: 1 Brick -> 1 Wheat]")  # Player 1 gains 25 - 5
    assert rule.act(game, rng) == "[Accept]"
    game = default_hand_built()
    game.step("[Offer: 1 Wheat -> 1 Brick]")  # Player 1 would lose 20: counter-offer instead
    assert rule.act(game, rng) == "[Offer: 1 Wheat -> 1 Ore]"


def test_rule_based_negotiator_denies_when_no_trade_helps():
    game = hand_built(
        holdings=[{"Wheat": 0, "Ore": 3}, {"Wheat": 5, "Ore": 5}],
        values=[{"Wheat": 4, "Ore": 44}, {"Wheat": 6, "Ore": 36}],
        resources=TWO_RESOURCES,
    )
    assert RuleBasedNegotiator().act(game, random.Random(0)) == "[Deny]"


def test_rule_based_negotiator_beats_random_and_plays_valid_moves():
    rule, total = RuleBasedNegotiator(), 0.0
    assert rule.name == "rule"
    for seed in range(300):
        game, rng, seat = SimpleNegotiation(), random.Random(seed), seed % 2
        game.reset(seed)
        while not game.is_terminal():
            if game.current_player() == seat:
                action = rule.act(game, rng)
            else:
                action = game.sample_action(rng)
            assert game.parse_action(action) == action
            game.step(action)
        total += game.returns()[seat]
    assert total / 300 > 0.5
