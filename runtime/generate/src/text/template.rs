//! Chat templates: the model's Jinja template rendered the way `transformers` does.
//!
//! `transformers` renders `apply_chat_template` in a sandboxed Jinja2 environment
//! with `trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension, a
//! `raise_exception` function and Python's string methods; the same settings
//! here make the rendered prompt byte for byte the one Python would build.

use std::collections::BTreeMap;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use super::{ChatMessage, TextError};

/// The name the template is stored under in its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// A compiled chat template with the special tokens it may refer to.
#[derive(Debug)]
pub(super) struct ChatTemplate {
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is reported here, not at the first request.
    pub(super) fn compile(
        source: &str,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self, TextError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(template_error)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(template_error)?;
        Ok(Self {
            env,
            bos_token,
            eos_token,
        })
    }

    /// Renders the prompt text for `messages`.
    pub(super) fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(template_error)?;
        let messages: Vec<Value> = messages.iter().map(message_value).collect();
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        };
        template.render(context).map_err(render_error)
    }
}

/// One message as the mapping templates index (`message['role']`, `message.content`).
fn message_value(message: &ChatMessage) -> Value {
    Value::from(BTreeMap::from([
        ("role", Value::from(message.role.as_str())),
        ("content", Value::from(message.content.as_str())),
    ]))
}

/// `raise_exception(message)`: how Hugging Face templates refuse a conversation.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn template_error(err: Error) -> TextError {
    TextError::Template(describe(&err))
}

fn render_error(err: Error) -> TextError {
    TextError::Render(describe(&err))
}

/// The error with its chain of causes, on one line.
fn describe(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_owned(),
            content: content.to_owned(),
        }
    }

    fn render(source: &str, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        ChatTemplate::compile(source, Some("<s>".into()), Some("</s>".into()))
            .expect("compiles")
            .render(messages, add_generation_prompt)
            .expect("renders")
    }

    #[test]
    fn block_tags_do_not_leave_newlines_or_indentation() {
        let source = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}";
        let text = render(source, &[message("user", "a"), message("user", "b")], false);
        assert_eq!(text, "[a]\n[b]\n");
    }

    #[test]
    fn special_tokens_and_generation_prompt_are_in_the_context() {
        let source = "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}{% if add_generation_prompt %}>{% endif %}";
        assert_eq!(render(source, &[message("user", "hi")], true), "<s>hi</s>>");
        assert_eq!(render(source, &[message("user", "hi")], false), "<s>hi</s>");
    }

    #[test]
    fn python_string_methods_and_bool_rendering_work() {
        let source =
            "{{ messages[0].content.strip().upper() }}|{{ messages[0].role.startswith('us') }}";
        assert_eq!(
            render(source, &[message("user", "  hi ")], false),
            "HI|True"
        );
    }

    #[test]
    fn raise_exception_becomes_a_render_error_with_its_message() {
        let source = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok";
        let template = ChatTemplate::compile(source, None, None).expect("compiles");
        let err = template
            .render(&[message("assistant", "x")], false)
            .expect_err("refused");
        assert!(
            matches!(&err, TextError::Render(text) if text.contains("Conversation must start with user")),
            "{err}"
        );
        assert_eq!(
            template
                .render(&[message("user", "x")], false)
                .expect("renders"),
            "ok"
        );
    }

    #[test]
    fn syntax_error_is_reported_at_compile_time() {
        let err = ChatTemplate::compile("{% for m in messages %}", None, None).expect_err("bad");
        assert!(matches!(err, TextError::Template(_)), "{err}");
    }

    #[test]
    fn missing_special_tokens_render_as_empty_text() {
        let template = ChatTemplate::compile("[{{ bos_token }}]", None, None).expect("compiles");
        assert_eq!(template.render(&[], false).expect("renders"), "[]");
    }
}
