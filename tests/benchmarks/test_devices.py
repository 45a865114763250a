import pandas as pd

from benchmarks.devices import speed_ratios


def test_speed_ratios_say_how_many_times_faster_the_gpu_is_for_each_of_the_three_jobs():
    table = pd.DataFrame([
        {"side": 32, "device": "cpu", "GAN steps/s": 2.0, "detector s, default steps (est.)": 600.0, "scoring images/s": 100.0},
        {"side": 64, "device": "cpu", "GAN steps/s": 1.0, "detector s, default steps (est.)": 900.0, "scoring images/s": 50.0},
        {"side": 32, "device": "cuda", "GAN steps/s": 30.0, "detector s, default steps (est.)": 40.0, "scoring images/s": 2000.0},
        {"side": 64, "device": "cuda", "GAN steps/s": 12.0, "detector s, default steps (est.)": 100.0, "scoring images/s": 400.0},
    ])
    ratios = speed_ratios(table).set_index("side")
    assert ratios.loc[32].to_dict() == {"GAN steps": 15.0, "detector training, one class": 15.0, "scoring": 20.0}
    assert ratios.loc[64].to_dict() == {"GAN steps": 12.0, "detector training, one class": 9.0, "scoring": 8.0}
