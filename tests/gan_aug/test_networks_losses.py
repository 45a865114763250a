from __future__ import annotations

import pytest
import torch

from gan_aug import losses
from gan_aug.networks import ConditionalBatchNorm2d, Discriminator, Generator, SharedBatchNorm2d


@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32), (3, 64), (1, 12), (3, 100), (3, 128), (1, 256)])
def test_networks_handle_grey_and_rgb_from_8_to_256(channels, size):
    g = Generator(n_classes=4, channels=channels, size=size, z_dim=16, width=8)
    d = Discriminator(n_classes=4, channels=channels, size=size, width=8)
    y = torch.tensor([0, 1, 2, 3])
    images = g(torch.randn(4, 16), y)
    assert images.shape == (4, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images, y).shape == (4,)


def test_projection_discriminator_uses_the_label():
    torch.manual_seed(0)
    d = Discriminator(n_classes=3, channels=1, size=8, width=8)
    x = torch.randn(2, 1, 8, 8)
    assert not torch.allclose(d(x, torch.tensor([0, 0])), d(x, torch.tensor([1, 1])))


def test_hinge_losses_reach_zero_only_when_confident():
    assert losses.hinge_discriminator(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0
    assert losses.hinge_discriminator(torch.zeros(4), torch.zeros(4)) == 2.0
    assert losses.adversarial_generator_loss(torch.full((4,), 3.0)) == -3.0


def test_mode_seeking_penalises_collapse():
    z_a, z_b = torch.randn(8, 4), torch.randn(8, 4)
    same = torch.zeros(8, 1, 4, 4)
    different = torch.rand(8, 1, 4, 4)
    assert losses.mode_seeking(same, same, z_a, z_b) > 100 * losses.mode_seeking(same, different, z_a, z_b)


def test_adversarial_loss_is_chosen_once_and_only_wgan_gp_pays_the_penalty():
    real, fake = torch.full((4,), 0.5), torch.full((4,), -0.5)
    asked = []

    def penalty():
        asked.append(1)
        return torch.tensor(0.25)

    hinge = losses.adversarial_loss("hinge", gp_weight=10.0)
    assert hinge.critic(real, fake, penalty) == losses.hinge_discriminator(real, fake) and not asked
    wgan = losses.adversarial_loss("wgan-gp", gp_weight=10.0)
    assert wgan.critic(real, fake, penalty) == -1.0 + 2.5 and asked == [1]
    assert hinge.generator is wgan.generator is losses.adversarial_generator_loss  # -E[D(G(z))] for both
    with pytest.raises(ValueError, match="loss must be"):
        losses.adversarial_loss("lsgan", gp_weight=10.0)


@pytest.mark.parametrize("size", [128, 256])
def test_networks_keep_their_widest_layer_above_64_px(size):
    """Above 64 px the stages go on but no layer is wider than the 64 px networks' widest."""
    def widest(net):
        return max(max(m.in_channels, m.out_channels) for m in net.modules() if isinstance(m, torch.nn.Conv2d))

    at_64 = Generator(4, 3, 64, 16, 8), Discriminator(4, 3, 64, 8)
    large = Generator(4, 3, size, 16, 8), Discriminator(4, 3, size, 8)
    assert [widest(n) for n in large] == [widest(n) for n in at_64] == [8 * 8, 8 * 8]
    assert large[0].base <= 8  # the first feature map is 8x8 or less


def test_the_judge_looks_at_a_32_px_view_of_larger_images():
    from gan_aug.networks import Judge

    small, large = Judge(4, 3, size=28), Judge(4, 3, size=128)
    assert isinstance(small.shrink, torch.nn.Identity) and small.view == 28
    assert large.view == 32 and large(torch.rand(2, 3, 128, 128)).shape == (2, 4)
    # the same weights judge a 128 px image as they judge its 32 px area average
    same = Judge(4, 3, size=32)
    same.load_state_dict(large.state_dict())
    x = torch.rand(2, 3, 128, 128)
    large.eval(), same.eval()
    assert torch.allclose(large(x), same(torch.nn.functional.avg_pool2d(x, 4)), atol=1e-5)


def test_the_contrast_view_keeps_the_shape_and_drops_its_colours():
    from gan_aug.networks import Judge, contrast_view

    shape = torch.zeros(1, 1, 16, 16)
    shape[..., 4:12, 6:9] = 1.0  # a stroke
    def drawn(stroke, ground):  # the stroke in one RGB colour on a ground of another, in [-1, 1]
        return shape * torch.tensor(stroke).view(1, 3, 1, 1) + (1 - shape) * torch.tensor(ground).view(1, 3, 1, 1)

    red_on_blue, yellow_on_black = drawn([1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]), drawn([1.0, 1.0, -1.0], [-1.0, -1.0, -1.0])
    view = contrast_view(red_on_blue)
    assert view.shape == (1, 1, 16, 16)
    torch.testing.assert_close(view, contrast_view(yellow_on_black), atol=1e-3, rtol=0)
    torch.testing.assert_close(view, contrast_view(-red_on_blue), atol=1e-3, rtol=0)  # ground and stroke swapped
    assert view[..., 8, 7].item() > view[..., 0, 0].item() + 1  # the stroke stands out from the ground
    # a judge with the view takes it as one more channel, at every size
    judge = Judge(4, 3, size=64, contrast=True)
    assert judge.body[0].in_channels == 4 and judge(torch.rand(2, 3, 64, 64) * 2 - 1).shape == (2, 4)
    assert Judge(4, 3, size=64).body[0].in_channels == 3


def test_class_feature_matching_pulls_each_class_centroid_not_each_image():
    real_means = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    scale = torch.tensor([1.0, 2.0])
    labels = torch.tensor([0, 0, 1, 1])
    # class 0 spread around its real mean, class 1 exactly at it: nothing to pull
    at_means = torch.tensor([[-3.0, 5.0], [3.0, -5.0], [1.0, 2.0], [1.0, 2.0]], requires_grad=True)
    assert losses.class_feature_matching(at_means, labels, real_means, scale).item() == 0.0
    # class 1's centroid off by (2, 2): in units of scale (2, 1), squared, averaged over 2 classes x 2 dims
    off = torch.tensor([[-3.0, 5.0], [3.0, -5.0], [3.0, 4.0], [3.0, 4.0]], requires_grad=True)
    loss = losses.class_feature_matching(off, labels, real_means, scale)
    assert loss.item() == pytest.approx((4.0 + 1.0) / 4)
    loss.backward()
    assert torch.all(off.grad[:2] == 0) and torch.all(off.grad[2:] > 0)  # only the class that is off moves


def test_class_feature_support_pulls_each_image_to_the_nearest_real_one_of_its_class():
    real = torch.tensor([[0.0, 0.0], [4.0, 0.0], [10.0, 10.0]])
    real_labels = torch.tensor([0, 0, 1])
    scale = torch.tensor([1.0, 1.0])
    on_support = torch.tensor([[4.0, 0.0], [10.0, 10.0]])
    assert losses.class_feature_support(on_support, torch.tensor([0, 1]), real, real_labels, scale).item() == 0.0
    # a class-1 fake on a class-0 image is far from its own class; a class-0 fake 1 from its nearest (4, 0)
    fakes = torch.tensor([[5.0, 0.0], [0.0, 0.0]], requires_grad=True)
    loss = losses.class_feature_support(fakes, torch.tensor([0, 1]), real, real_labels, scale)
    assert loss.item() == pytest.approx(((1.0) / 2 + (100.0 + 100.0) / 2) / 2)
    loss.backward()
    assert fakes.grad[0, 0] > 0 and fakes.grad[1, 0] < 0 and fakes.grad[1, 1] < 0  # towards (4, 0) and (10, 10)


def test_adc_losses_read_real_of_class_k_as_2k_and_fake_as_2k_plus_1():
    labels = torch.tensor([0, 2])
    as_real = torch.full((2, 6), -10.0)
    as_real[torch.arange(2), 2 * labels] = 10.0  # the head says "real image of its class"
    as_fake = torch.full((2, 6), -10.0)
    as_fake[torch.arange(2), 2 * labels + 1] = 10.0  # "fake of its class"
    assert losses.adc_critic(as_real, labels, as_fake, labels) < 1e-6  # a critic that is right pays nothing
    assert losses.adc_critic(as_fake, labels, as_real, labels) > 10
    # the generator gains when its fakes read as real images of the asked class, and loses otherwise
    assert losses.adc_generator(as_real, labels) < -10 < 10 < losses.adc_generator(as_fake, labels)
    # weight-0 fakes count for nothing
    assert losses.adc_generator(torch.cat([as_real, as_fake]), labels.repeat(2), torch.tensor([1.0, 1, 0, 0])) < -10


def test_the_classifier_head_is_built_last_and_shares_the_critic_features():
    torch.manual_seed(0)
    plain = Discriminator(n_classes=3, channels=3, size=16, width=8)
    torch.manual_seed(0)
    headed = Discriminator(n_classes=3, channels=3, size=16, width=8, classifier=True)
    assert plain.classify is None and not any(k.startswith("classify") for k in plain.state_dict())
    for name, value in plain.state_dict().items():  # the same initial weights with or without the head
        torch.testing.assert_close(headed.state_dict()[name], value)
    plain.eval(), headed.eval()  # (spectral norm's power iteration would step on every forward in training)
    x, y = torch.randn(5, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1])
    score, logits = headed.scores(x, y)
    assert logits.shape == (5, 6) and plain.scores(x, y)[1] is None
    torch.testing.assert_close(score, plain(x, y))
    torch.testing.assert_close(headed(x, y), plain(x, y))


@pytest.mark.parametrize("class_norms, expected", [(None, [True, True, True]), (1, [True, False, False]),
                                                   (2, [True, True, False]), (0, [False, False, False]),
                                                   (9, [True, True, True])])
def test_class_norms_make_the_coarse_norms_take_the_class_and_the_fine_ones_shared(class_norms, expected):
    generator = Generator(n_classes=3, channels=3, size=32, z_dim=8, width=8, class_norms=class_norms)
    norms = [block.norm for block in generator.blocks] + [generator.out_norm]  # coarsest first
    assert [isinstance(norm, ConditionalBatchNorm2d) for norm in norms] == expected
    assert all(isinstance(norm, SharedBatchNorm2d) for norm, cond in zip(norms, expected) if not cond)
    generator.eval()
    z = torch.randn(4, 8)
    assert generator(z, torch.tensor([0, 1, 2, 0])).shape == (4, 3, 32, 32)
    if class_norms == 0:  # the class enters only through its embedding next to z
        generator.embed.weight.data.zero_()
        torch.testing.assert_close(generator(z, torch.zeros(4, dtype=torch.long)), generator(z, torch.full((4,), 2)))


def test_the_default_generator_draws_the_same_initial_weights_as_with_every_norm_conditional():
    torch.manual_seed(0)
    default = Generator(n_classes=3, channels=1, size=16, z_dim=8, width=8)
    torch.manual_seed(0)
    explicit = Generator(n_classes=3, channels=1, size=16, z_dim=8, width=8, class_norms=3)  # 2 blocks + output
    assert default.state_dict().keys() == explicit.state_dict().keys()
    for name, value in default.state_dict().items():
        torch.testing.assert_close(explicit.state_dict()[name], value)


def test_critic_contrast_off_is_the_plain_critic_and_class_judges_the_class_by_shape_alone():
    torch.manual_seed(0)
    plain = Discriminator(n_classes=3, channels=3, size=16, width=8)
    torch.manual_seed(0)
    shaped = Discriminator(n_classes=3, channels=3, size=16, width=8, contrast="class")
    for name, value in plain.state_dict().items():  # the shape tower is built last: same weights as without it
        torch.testing.assert_close(shaped.state_dict()[name], value)
    plain.eval(), shaped.eval()
    x, y0, y1 = torch.rand(5, 3, 16, 16) * 2 - 1, torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.long)
    recoloured = -x[:, [2, 0, 1]]  # other channels, stroke and ground swapped: the same shapes
    # the class term (the score's difference between two labels) depends on the shape alone ...
    torch.testing.assert_close(shaped(x, y1) - shaped(x, y0), shaped(recoloured, y1) - shaped(recoloured, y0))
    # ... not so in the plain critic, nor in the unconditional term of the shaped one
    assert not torch.allclose(plain(x, y1) - plain(x, y0), plain(recoloured, y1) - plain(recoloured, y0))
    assert not torch.allclose(shaped(x, y0), shaped(recoloured, y0))


def test_critic_contrast_channel_shows_the_view_beside_the_image_and_bad_modes_fail():
    d = Discriminator(n_classes=3, channels=3, size=16, width=8, contrast="channel")
    assert d.features[0].weight.shape[1] == 4 and d.shape_features is None
    assert d(torch.rand(2, 3, 16, 16), torch.tensor([0, 2])).shape == (2,)
    with pytest.raises(ValueError, match="contrast must be one of"):
        Discriminator(n_classes=3, channels=3, size=16, width=8, contrast="shape")
