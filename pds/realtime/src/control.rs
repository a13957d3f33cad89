//! A PID speed controller over a simulated DC motor: the work of rt-task's releases.
//!
//! Fixed point, Q16.16 in `i32` (`ONE` = 1.0), with `i64` intermediates and saturation
//! everywhere. aarch64-unknown-none is a hard-float target and Microkit lets PDs use the FPU,
//! but fixed point makes the host tests bit-identical to the PD and keeps the release's cost
//! independent of seL4's lazy FPU switching.
//!
//! - [`Motor`]: the plant, a DC motor's speed with its electrical time constant neglected, a
//!   first-order lag `tau * dw/dt = K * u - w` (speed `w`, voltage `u`), stepped by forward Euler
//!   once per release. It is also the sensor: [`Motor::sample`] is the speed the loop reads.
//! - [`Pid`]: `u = Kp * e + I - Kd * dy/dt` (derivative on the measurement, so a setpoint step
//!   gives no kick), `I += Ki * e * dt`, the output clamped to the actuator's range and the
//!   integral frozen while the output saturates in the error's direction (anti-windup).
//! - [`Loop`]: one release = sample, control law, actuate; [`Loop::step`] is what the task runs.

/// 1.0 in Q16.16.
pub const ONE: i32 = 1 << 16;

/// `value` (a Q16.16 number) as thousandths, for display.
pub const fn milli(value: i32) -> i64 {
    (value as i64 * 1000) >> 16
}

/// Q16.16 from thousandths.
pub const fn from_milli(thousandths: i64) -> i32 {
    saturate((thousandths << 16) / 1000)
}

const fn saturate(value: i64) -> i32 {
    if value > i32::MAX as i64 {
        i32::MAX
    } else if value < i32::MIN as i64 {
        i32::MIN
    } else {
        value as i32
    }
}

/// `a * b` in Q16.16.
const fn mul(a: i32, b: i32) -> i32 {
    saturate((a as i64 * b as i64) >> 16)
}

/// `a * dt`, `dt` in microseconds.
const fn times_dt(a: i32, dt_us: u64) -> i64 {
    (a as i64 * dt_us as i64) / 1_000_000
}

/// The plant: a DC motor's speed as a first-order lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Motor {
    /// Steady-state speed per volt (Q16.16).
    pub gain: i32,
    /// The mechanical time constant, microseconds.
    pub tau_us: u64,
    /// The speed now (Q16.16).
    pub speed: i32,
}

impl Motor {
    /// At rest.
    pub const fn new(gain: i32, tau_us: u64) -> Motor {
        Motor { gain, tau_us, speed: 0 }
    }

    /// The sensor: the speed now.
    pub fn sample(&self) -> i32 {
        self.speed
    }

    /// Applies `voltage` for `dt_us`.
    pub fn advance(&mut self, voltage: i32, dt_us: u64) {
        let drive = mul(self.gain, voltage) as i64 - self.speed as i64;
        // Forward Euler; dt is capped at tau so that a long gap cannot overshoot the target.
        let dt = dt_us.min(self.tau_us) as i64;
        self.speed = saturate(self.speed as i64 + drive * dt / self.tau_us.max(1) as i64);
    }
}

/// Gains and limits of a [`Pid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gains {
    pub kp: i32,
    /// Per second.
    pub ki: i32,
    /// Seconds.
    pub kd: i32,
    pub output_min: i32,
    pub output_max: i32,
}

/// A PID controller's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pid {
    pub gains: Gains,
    integral: i32,
    previous: Option<i32>,
}

/// One evaluation of the control law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actuation {
    /// The output, within the limits (Q16.16).
    pub output: i32,
    /// The unclamped law asked for more than the limits.
    pub saturated: bool,
}

impl Pid {
    pub const fn new(gains: Gains) -> Pid {
        Pid { gains, integral: 0, previous: None }
    }

    /// The output for `measurement` against `setpoint`, `dt_us` after the previous one.
    pub fn update(&mut self, setpoint: i32, measurement: i32, dt_us: u64) -> Actuation {
        let g = self.gains;
        let error = saturate(setpoint as i64 - measurement as i64);
        let rate = match self.previous {
            // dy/dt in units per second.
            Some(previous) if dt_us > 0 => saturate((measurement as i64 - previous as i64) * 1_000_000 / dt_us as i64),
            _ => 0,
        };
        self.previous = Some(measurement);
        let integral = saturate(self.integral as i64 + times_dt(mul(g.ki, error), dt_us));
        let law = |integral: i32| mul(g.kp, error) as i64 + integral as i64 - mul(g.kd, rate) as i64;
        let raw = law(integral);
        let output = raw.clamp(g.output_min as i64, g.output_max as i64) as i32;
        let saturated = raw != output as i64;
        // Anti-windup: integrate only when the output is not pinned in the error's direction.
        let winding = (raw > g.output_max as i64 && error > 0) || (raw < g.output_min as i64 && error < 0);
        if !winding {
            self.integral = integral.clamp(g.output_min, g.output_max);
        }
        Actuation { output, saturated }
    }
}

/// One release of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub setpoint: i32,
    /// The sample the law used.
    pub measurement: i32,
    pub actuation: Actuation,
}

/// The control loop: a PID over a motor, sampled and actuated once per release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loop {
    pub motor: Motor,
    pub pid: Pid,
    pub setpoint: i32,
}

/// rt-task's loop: a motor of 1 (rad/s)/V with a 50 ms time constant, a 0..12 V actuator, and a
/// PI law whose zero cancels the motor's pole (`Ki / Kp = 1 / tau`): the closed loop is a
/// first-order lag of `tau / Kp` = 25 ms, so a step settles without overshoot while the output
/// stays unsaturated.
pub const fn motor_loop() -> Loop {
    Loop {
        motor: Motor::new(ONE, 50_000),
        pid: Pid::new(Gains { kp: 2 * ONE, ki: 40 * ONE, kd: 0, output_min: 0, output_max: 12 * ONE }),
        setpoint: 0,
    }
}

/// Setpoints the normal world may ask for: 0..=10 rad/s (the actuator reaches 12).
pub const SETPOINT_MAX: i32 = 10 * ONE;

impl Loop {
    /// Sample, control, actuate: what one release does. `dt_us` is the release's period.
    pub fn step(&mut self, dt_us: u64) -> Step {
        let measurement = self.motor.sample();
        let actuation = self.pid.update(self.setpoint, measurement, dt_us);
        // The actuator holds the output until the next release.
        self.motor.advance(actuation.output, dt_us);
        Step { setpoint: self.setpoint, measurement, actuation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD_US: u64 = 1000;

    /// Runs `periods` releases towards `setpoint`; the sampled speeds and outputs.
    fn run(l: &mut Loop, setpoint: i32, periods: usize) -> (Vec<i32>, Vec<Actuation>) {
        l.setpoint = setpoint;
        (0..periods).map(|_| l.step(PERIOD_US)).map(|s| (s.measurement, s.actuation)).unzip()
    }

    /// The first period from which every sample stays within `band_milli` thousandths of `target`.
    fn settled_at(samples: &[i32], target: i32, band_per_mille: i64) -> Option<usize> {
        let band = (target as i64 * band_per_mille / 1000).abs();
        let last_out = samples.iter().rposition(|&s| (s as i64 - target as i64).abs() > band);
        match last_out {
            None => Some(0),
            Some(i) if i + 1 < samples.len() => Some(i + 1),
            Some(_) => None,
        }
    }

    #[test]
    fn a_step_settles_within_2_percent_in_120_periods_without_overshoot() {
        let mut l = motor_loop();
        let target = 5 * ONE;
        let (speeds, outputs) = run(&mut l, target, 400);
        // Closed loop: a 25 ms lag; 2% is 4 time constants, 100 periods of 1 ms.
        let settled = settled_at(&speeds, target, 20).expect("settles");
        assert!((90..=120).contains(&settled), "settled at period {settled}");
        let peak = *speeds.iter().max().unwrap();
        println!("5 rad/s step: settled (2%) at period {settled}, peak {} mrad/s", milli(peak));
        assert!(peak <= target + target / 200, "overshoot: peak {} of {}", milli(peak), milli(target));
        // In steady state the output holds the motor at the setpoint: 5 V for 5 rad/s.
        assert!((milli(outputs[399].output) - 5000).abs() <= 10, "{}", milli(outputs[399].output));
        assert!(outputs.iter().all(|a| !a.saturated), "a 5 rad/s step asks at most 10 V");
    }

    #[test]
    fn a_large_step_saturates_the_actuator_and_does_not_wind_up() {
        let mut l = motor_loop();
        let target = SETPOINT_MAX;
        let (speeds, outputs) = run(&mut l, target, 600);
        assert!(outputs[0].saturated && outputs[0].output == 12 * ONE, "20 V asked, 12 V given");
        assert!(outputs.iter().all(|a| (0..=12 * ONE).contains(&a.output)));
        let peak = *speeds.iter().max().unwrap();
        assert!(peak <= target + target / 100, "anti-windup: overshoot {} of {}", milli(peak), milli(target));
        let settled = settled_at(&speeds, target, 20).expect("settles");
        println!("10 rad/s step: settled (2%) at period {settled}, peak {} mrad/s", milli(peak));
        assert!(settled <= 200, "settled at period {settled}");
    }

    #[test]
    fn the_loop_follows_a_setpoint_down_and_the_output_never_goes_negative() {
        let mut l = motor_loop();
        run(&mut l, 8 * ONE, 400);
        let (speeds, outputs) = run(&mut l, 2 * ONE, 600);
        assert!(outputs.iter().all(|a| a.output >= 0), "the actuator cannot brake");
        assert!(outputs[0].saturated, "8 -> 2 asks a negative voltage first");
        let low = *speeds.iter().min().unwrap();
        assert!(low >= 2 * ONE - ONE / 50, "undershoot to {}", milli(low));
        assert!(settled_at(&speeds, 2 * ONE, 20).is_some());
    }

    #[test]
    fn the_motor_alone_is_a_first_order_lag() {
        let mut m = Motor::new(ONE, 50_000);
        for _ in 0..50 {
            m.advance(ONE, 1000);
        }
        // After one time constant: 1 - (1 - 1/50)^50 = 63.6% of the target.
        assert!((milli(m.sample()) - 636).abs() <= 3, "{}", milli(m.sample()));
        // A gap longer than tau does not overshoot.
        m.advance(ONE, 10_000_000);
        assert!(m.sample() <= ONE);
    }

    #[test]
    fn derivative_on_measurement_gives_no_kick_and_fixed_point_helpers_round_trip() {
        let gains = Gains { kp: 0, ki: 0, kd: ONE, output_min: -100 * ONE, output_max: 100 * ONE };
        let mut pid = Pid::new(gains);
        assert_eq!(pid.update(0, 0, 1000).output, 0);
        assert_eq!(pid.update(50 * ONE, 0, 1000).output, 0, "a setpoint step: no derivative kick");
        // The measurement rising by 0.001 (65/65536) in 1 ms is ~1 unit/s: ~-1 with Kd = 1 s.
        assert_eq!(pid.update(50 * ONE, from_milli(1), 1000).output, -from_milli(1) * 1000);
        assert_eq!((milli(from_milli(2500)), from_milli(1000)), (2500, ONE));
    }
}
