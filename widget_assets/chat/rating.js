// Live Operator Chat, chat window: the rating question (issue 19). When the conversation is
// resolved and the server says to ask (the site asks, and this resolution is not rated yet),
// the visitor may give 1-5 stars and a comment. The widget shows this same window, so it asks
// there too.

import { ApiError } from "./api.js";
import { el } from "./dom.js";

const SCORES = [1, 2, 3, 4, 5];
const LABELS = ["Very bad", "Bad", "OK", "Good", "Very good"];
const COMMENT_MAX_CHARS = 1000; // the server's limit (docs/api.md, "rate")

/** The question inside ``container`` (a hidden element of the page); ``call`` is the
 * chat-window API. ``offer(convoID)`` asks the server, then shows it; ``hide()`` withdraws it. */
export function createRating(container, call) {
  let shownFor = null; // the conversation the question is on screen for
  let chosen = 0;

  const title = el("p", "rating__title");
  title.id = "rating-title";
  title.textContent = "How did we do?";
  const stars = el("div", "rating__stars");
  stars.setAttribute("role", "radiogroup");
  stars.setAttribute("aria-labelledby", "rating-title");
  const buttons = SCORES.map((score) => {
    const star = el("button", "rating__star");
    star.type = "button";
    star.textContent = "★";
    star.setAttribute("role", "radio");
    star.setAttribute("aria-checked", "false");
    star.setAttribute("aria-label", `${score} of 5: ${LABELS[score - 1]}`);
    star.addEventListener("click", () => choose(score));
    stars.append(star);
    return star;
  });
  const comment = el("textarea", "rating__comment");
  comment.rows = 2;
  comment.maxLength = COMMENT_MAX_CHARS;
  comment.placeholder = "Anything to add? (optional)";
  comment.setAttribute("aria-label", "Comment (optional)");
  const send = el("button", "rating__send");
  send.type = "button";
  send.textContent = "Send rating";
  send.disabled = true;
  send.addEventListener("click", submit);
  const note = el("p", "rating__note");
  note.setAttribute("role", "status");
  container.append(title, stars, comment, send, note);

  function choose(score) {
    chosen = score;
    buttons.forEach((star, i) => {
      star.setAttribute("aria-checked", String(i + 1 === score));
      star.classList.toggle("is-on", i < score);
    });
    send.disabled = false;
  }

  function reset() {
    chosen = 0;
    buttons.forEach((star) => {
      star.setAttribute("aria-checked", "false");
      star.classList.remove("is-on");
    });
    comment.value = "";
    note.textContent = "";
    for (const control of [stars, comment, send]) control.hidden = false;
    send.disabled = true;
  }

  async function offer(convoID) {
    if (shownFor === convoID) return;
    shownFor = convoID;
    let answer;
    try {
      answer = await call("rateable", { convoID });
    } catch {
      return; // not asking is the safe side of an error
    }
    if (shownFor !== convoID || !answer.ask) return;
    reset();
    container.hidden = false;
  }

  function hide() {
    shownFor = null;
    container.hidden = true;
  }

  async function submit() {
    if (!chosen || !shownFor) return;
    send.disabled = true;
    try {
      await call("rate", { convoID: shownFor, rating: chosen, comment: comment.value });
    } catch (error) {
      // Rated already (another tab) or no longer resolved: nothing left to ask.
      if (error instanceof ApiError && error.status === 409) {
        hide();
        return;
      }
      note.textContent = `Could not send your rating: ${error.message}`;
      send.disabled = false;
      return;
    }
    for (const control of [stars, comment, send]) control.hidden = true;
    note.textContent = "Thank you for your feedback!";
  }

  return { offer, hide };
}
