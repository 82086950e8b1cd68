//! `emvae generate`: a synthetic Gaussian-mixture data set as CSV.

use emvae_core::data::synthetic::SyntheticMixture;

use crate::args::GenerateArgs;
use crate::error::{CliError, CliResult};
use crate::output::num;

pub fn generate(args: &GenerateArgs) -> CliResult<()> {
    if args.text {
        return generate_text(args);
    }
    let spec = SyntheticMixture {
        n_samples: args.n_samples,
        n_features: args.n_features.unwrap_or_default(),
        n_components: args.n_components.unwrap_or_default(),
        separation: args.separation,
        label_fraction: args.label_fraction,
        seed: args.seed,
    };
    spec.check()
        .map_err(|e| CliError::user(format!("--{}: {}", e.key.replace('_', "-"), e.message)))?;
    let generated = spec.generate();
    let data = &generated.data;
    let mut text = (0..data.n_cols())
        .map(|a| format!("x{a}"))
        .collect::<Vec<_>>()
        .join(",");
    if data.labels.is_some() {
        text.push_str(",label");
    }
    text.push('\n');
    for (i, row) in data.x.rows().enumerate() {
        text.push_str(&row.iter().map(|&v| num(v)).collect::<Vec<_>>().join(","));
        if let Some(labels) = &data.labels {
            text.push(',');
            if let Some(l) = labels[i] {
                text.push_str(&l.to_string());
            }
        }
        text.push('\n');
    }
    crate::output::write_output(&args.output, text.as_bytes())?;
    tracing::info!(
        "wrote {} rows x {} features ({} labelled) to {}",
        data.n_rows(),
        data.n_cols(),
        data.n_labelled(),
        args.output.display()
    );
    Ok(())
}

/// `emvae generate --text`: sentences of the built-in grammar, labelled with the chosen factor.
fn generate_text(args: &GenerateArgs) -> CliResult<()> {
    use emvae_text::grammar::{GrammarSpec, LabelFactor, generate, to_lines};
    let label = match args.label.as_str() {
        "none" => LabelFactor::None,
        "sentiment" => LabelFactor::Sentiment,
        "topic" => LabelFactor::Topic,
        "both" => LabelFactor::Both,
        other => {
            return Err(CliError::user(format!(
                "--label: `{other}` is not one of none, sentiment, topic, both"
            )));
        }
    };
    if args.n_samples == 0 {
        return Err(CliError::user("--n-samples: must be at least 1"));
    }
    let sentences = generate(&GrammarSpec {
        n_sentences: args.n_samples,
        seed: args.seed,
    });
    crate::output::write_output(&args.output, to_lines(&sentences, label).as_bytes())?;
    tracing::info!(
        "wrote {} sentences to {}",
        sentences.len(),
        args.output.display()
    );
    Ok(())
}
