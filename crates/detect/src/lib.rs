#![doc = include_str!("../README.md")]

pub mod bank;
pub mod baseline;
pub mod detector;
pub mod ensemble;
pub mod error;
pub mod event;
pub mod forecast;
pub mod isolation_forest;
pub mod level_shift;
pub mod likelihood;
pub mod overrides;
pub mod persist;
pub mod range_breach;
mod sampling;
pub mod seasonal;
#[cfg(test)]
mod testkit;
pub mod trend;
pub mod volatility_shift;
pub mod watch;
mod window;

pub use bank::{AnomalyEvent, DetectorBank, alarm_direction};
pub use baseline::{Assessment, Phase, RobustBaselineConfig, RobustBaselineDetector};
pub use detector::{AlarmDirection, Band, Detector, Score};
pub use ensemble::{Ensemble, EnsembleConfig, EnsembleScore};
pub use error::{DetectError, MAX_MAGNITUDE};
pub use event::{EventPhase, EventRule};
pub use forecast::{ForecastBandConfig, ForecastBandDetector, InvalidSeasonLength};
pub use isolation_forest::{
    InvalidDimensions, IsolationForestConfig, IsolationForestDetector, MultivariateDetector,
};
pub use level_shift::{LevelShiftConfig, LevelShiftDetector};
pub use likelihood::AnomalyLikelihood;
pub use overrides::{OverrideError, OverrideRule, Overrides, SeriesSelector};
pub use persist::{PersistConfig, PersistDetector};
pub use range_breach::{RangeBreachConfig, RangeBreachDetector};
pub use seasonal::{SeasonalConfig, SeasonalDetector, Seasonality};
pub use trend::{TrendConfig, TrendDetector};
pub use volatility_shift::{VolatilityShiftConfig, VolatilityShiftDetector};
pub use watch::{SeriesWatch, Watched};
