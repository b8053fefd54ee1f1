//! Study set-ups (`lab_model::study::Study`, `docs/study-format.md`): what a
//! station needs to run one study's sessions, edited by researchers and
//! pulled by stations. `lab_model` checks a set-up on its own; this module
//! adds what only the lab server knows: the life situation must be a journey
//! lab-web has, and every step a task covers must be one of its steps, so a
//! station never rates a step the journey map cannot place.

use lab_model::study::Study;

use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;
use crate::types::{JourneyInfo, User};

/// Reads a set-up sent as JSON for the path's `id`, checks it (its own rules,
/// its journey) and stores it, replacing any set-up with that id. Every
/// refusal is a 400 saying what is wrong.
pub async fn save(
    state: &AppState,
    id: &str,
    body: serde_json::Value,
    user: &User,
) -> ApiResult<Study> {
    let study: Study = serde_json::from_value(body).map_err(|e| {
        ApiError::bad(format!(
            "это не настройка исследования / not a study set-up: {e}"
        ))
    })?;
    if study.id != id {
        return Err(ApiError::bad(format!(
            "id {:?} в теле не совпадает с адресом / the body's id {:?} differs from the path's {id:?}",
            study.id, study.id
        )));
    }
    study.validate().map_err(|e| ApiError::bad(e.to_string()))?;
    let journey = store::journeys::get(&state.db.pool, &study.life_situation).await?;
    check_journey(&study, journey.as_ref()).map_err(ApiError::BadRequest)?;
    store::setups::save(&state.db.pool, &study, now_ms(), user.id).await?;
    Ok(study)
}

/// Whether the set-up fits its journey (`None`: lab-web does not know it).
fn check_journey(study: &Study, journey: Option<&JourneyInfo>) -> Result<(), String> {
    let Some(journey) = journey else {
        return Err(format!(
            "жизненная ситуация {:?} неизвестна лаборатории / life_situation {:?} is not a journey lab-web knows",
            study.life_situation, study.life_situation
        ));
    };
    for task in &study.tasks {
        if let Some(step) = task
            .steps
            .iter()
            .find(|s| !journey.steps.iter().any(|j| &j.id == *s))
        {
            return Err(format!(
                "задача {}: шага {step:?} нет в пути {} / task {}: step {step:?} is not a step of journey {}",
                task.id, journey.id, task.id, journey.id
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::JourneyStep;
    use lab_model::study::{Questionnaires, STUDY_FORMAT_VERSION, Task};

    fn study(steps: &[&str]) -> Study {
        Study {
            format_version: STUDY_FORMAT_VERSION,
            id: "s".into(),
            title: "S".into(),
            life_situation: "j".into(),
            consent_text: "да".into(),
            participant_pattern: "P##".into(),
            questionnaires: Questionnaires::default(),
            tasks: vec![Task {
                id: "t1".into(),
                title: "T".into(),
                instruction: String::new(),
                expected_s: 0,
                steps: steps.iter().map(|s| s.to_string()).collect(),
            }],
        }
    }

    fn journey() -> JourneyInfo {
        JourneyInfo {
            id: "j".into(),
            title: "J".into(),
            version: "1".into(),
            steps: ["a", "b"]
                .map(|id| JourneyStep {
                    id: id.into(),
                    title: id.into(),
                    significance: 3,
                    expected_ms: 0,
                })
                .into(),
        }
    }

    #[test]
    fn tasks_cover_only_steps_of_their_journey() {
        let j = journey();
        for (steps, want) in [
            (&[][..], None),
            (&["a", "b"][..], None),
            (
                &["a", "c"][..],
                Some("step \"c\" is not a step of journey j"),
            ),
        ] {
            let got = check_journey(&study(steps), Some(&j)).err();
            match want {
                None => assert_eq!(got, None, "{steps:?}"),
                Some(w) => assert!(got.as_deref().is_some_and(|g| g.contains(w)), "{got:?}"),
            }
        }
        let e = check_journey(&study(&[]), None).unwrap_err();
        assert!(e.contains("is not a journey lab-web knows"), "{e}");
    }
}
