// The call page: clicking a turn of the conversation (or a point of the level strip) plays the
// recording from there. Without this script the page still shows everything, and each turn's
// time is a link to the recording at that offset (#t=…).
"use strict";
(function () {
    function ready(fn) {
        if (document.readyState === "loading") {
            document.addEventListener("DOMContentLoaded", fn);
        } else {
            fn();
        }
    }

    ready(function () {
        const audio = document.getElementById("call-recording");
        if (!audio) {
            return;
        }
        const turns = Array.from(document.querySelectorAll(".dialogue .turn[data-start]"));

        function playFrom(seconds) {
            const start = function () {
                audio.currentTime = seconds;
                // Chromium refuses play() without a user gesture: this runs from a click, but a
                // refusal must not break the seek.
                audio.play().catch(function () {});
            };
            if (audio.readyState >= HTMLMediaElement.HAVE_METADATA) {
                start();
            } else {
                audio.addEventListener("loadedmetadata", start, {once: true});
                audio.preload = "auto";
                audio.load();
            }
        }

        turns.forEach(function (turn) {
            turn.addEventListener("click", function (event) {
                if (window.getSelection().toString()) {
                    return; // selecting text to copy it, not asking to play
                }
                event.preventDefault();
                playFrom(parseFloat(turn.dataset.start));
            });
        });

        const strip = document.querySelector(".call-levels");
        if (strip) {
            strip.querySelector("svg").addEventListener("click", function (event) {
                const box = event.currentTarget.getBoundingClientRect();
                const share = (event.clientX - box.left) / box.width;
                playFrom(share * parseFloat(strip.dataset.duration));
            });
        }

        // Mark the turn being played, so the dialogue follows the recording.
        audio.addEventListener("timeupdate", function () {
            let current = null;
            turns.forEach(function (turn) {
                if (parseFloat(turn.dataset.start) <= audio.currentTime) {
                    current = turn;
                }
            });
            turns.forEach(function (turn) {
                turn.classList.toggle("playing", turn === current && !audio.paused);
            });
        });
    });
})();
